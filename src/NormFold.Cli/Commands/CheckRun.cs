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
        var shared = options.CompareIntermediates ? SharedTensors.Names(reference, candidate) : [];
        using var a = SharedTensors.Runner(reference, shared, options.Level);
        using var b = SharedTensors.Runner(candidate, shared, options.Level);

        Func<int, List<NamedTensor>> inputsFor;
        IReadOnlyList<string> notes = [];
        if (request.InputsDir != null || request.InputFiles.Count > 0)
        {
            List<List<NamedTensor>> sets;
            string provenance;
            try { (sets, provenance) = InputFiles.Load(a.Inputs, request.InputFiles, request.InputsDir); }
            catch (FormatException e) { throw new UsageException(e.Message); }
            options = options with { Iterations = sets.Count, InputProvenance = provenance };
            inputsFor = i => sets[i];
        }
        else
        {
            var generator = new InputGenerator(a.Inputs, options.Seed, options.Shapes, options.Ranges);
            notes = generator.Notes;
            inputsFor = generator.Generate;
        }
        var report = EquivalenceChecker.Check(a, b, options, inputsFor, SaveOutputs(request, options), shared);
        return report with { Notes = [.. notes, .. report.Notes] };
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
