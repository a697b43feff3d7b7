using NormFold.Onnx;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

/// <summary>One check as `check` and `fold --check` run it: inputs generated or read from files, outputs saved on
/// request, intermediates compared unless --outputs-only.</summary>
public static class CheckRun
{
    public static CheckReport Run(string referencePath, string candidatePath, CheckSettings.Request request)
    {
        var options = request.Options;
        var reference = OnnxModel.Load(referencePath);
        var candidate = OnnxModel.Load(candidatePath);
        if (request.InputsDir == null && request.InputFiles.Count == 0)
            return EquivalenceChecker.Check(reference, candidate, options, null, SaveOutputs(request, options));
        List<List<NamedTensor>> sets;
        string provenance;
        try { (sets, provenance) = InputFiles.Load(ModelInputs.Of(reference), request.InputFiles, request.InputsDir); }
        catch (FormatException e) { throw new UsageException(e.Message); }
        options = options with { Iterations = sets.Count, InputProvenance = provenance };
        return EquivalenceChecker.Check(reference, candidate, options, i => sets[i], SaveOutputs(request, options));
    }

    static Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? SaveOutputs(CheckSettings.Request request, CheckOptions options)
    {
        if (request.SaveOutputs is not { } root) return null;
        return (it, _, expected, actual) =>
        {
            string dir = options.Iterations > 1 ? Path.Combine(root, $"iteration_{it}") : root;
            foreach (var (sub, tensors) in new[] { ("reference", (IEnumerable<NamedTensor>)expected), ("candidate", actual.Values) })
            {
                Directory.CreateDirectory(Path.Combine(dir, sub));
                foreach (var t in tensors) Npy.Write(Path.Combine(dir, sub, InputFiles.SafeFileName(t.Name) + ".npy"), t);
            }
        };
    }
}
