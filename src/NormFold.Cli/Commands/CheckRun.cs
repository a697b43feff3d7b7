using NormFold.Onnx;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

/// <summary>One check as `check` and `fold --check` run it: inputs generated or read from files, outputs saved on
/// request, intermediates compared unless --outputs-only.</summary>
internal static class CheckRun
{
    /// <param name="candidateLabel">How messages name the candidate (fold --check: the output path, not the staged file).</param>
    /// <param name="observe">Also called with each iteration's outputs (the reports' error histograms).</param>
    public static CheckReport Run(string referencePath, string candidatePath, CheckSettings.Request request, string? candidateLabel = null,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? observe = null)
    {
        using var progress = CheckProgress.For(candidateLabel is null ? "check" : "fold", request.Quiet);
        if (progress is not null) request = request with { Options = request.Options with { Progress = progress.Report } };
        try { return RunCore(referencePath, candidatePath, request, candidateLabel, observe); }
        catch (InvalidModelException e) when (e.Message.Contains(InputGenerator.ShapeHint, StringComparison.Ordinal))
        {
            throw new InvalidModelException(WithShapeOption(e.Message), e.InnerException);
        }
    }

    /// <summary>The library's "bind it with a shape", as the option that does it.</summary>
    static string WithShapeOption(string text) => text.Replace(InputGenerator.ShapeHint, "bind it with --shape NAME:DxDx…", StringComparison.Ordinal);

    static CheckReport RunCore(string referencePath, string candidatePath, CheckSettings.Request request, string? candidateLabel,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? observe)
    {
        var options = request.Options with
        {
            ReferenceLabel = $"the original ({referencePath})",
            CandidateLabel = candidateLabel ?? $"the rewritten model ({candidatePath})",
        };
        using var reference = OnnxModel.Load(referencePath);
        using var candidate = OnnxModel.Load(candidatePath, candidateLabel); // a staged file is named as the output it becomes
        if (request.InputsDir == null && request.InputFiles.Count == 0)
        {
            var generated = EquivalenceChecker.Check(reference, candidate, options, null, Both(SaveOutputs(request, options), observe));
            return generated with { Notes = generated.Notes.Select(WithShapeOption).ToList() };
        }
        var (sets, provenance) = InputFiles.Load(ModelInputs.Of(reference), request.InputFiles, request.InputsDir);
        options = options with { Iterations = sets.Count, InputProvenance = provenance };
        // A test_data_set's output_K.pb: does the original reproduce them? Reported, not part of the verdict (which is
        // about the two models agreeing).
        var expected = request.InputsDir is { } dir ? InputFiles.ExpectedOutputs(dir) : [];
        var expectationNotes = new List<string>();
        var save = Both(SaveOutputs(request, options), observe);
        var report = EquivalenceChecker.Check(reference, candidate, options, i => sets[i], (it, inputs, outputs, actual) =>
        {
            save?.Invoke(it, inputs, outputs, actual);
            if (it >= expected.Count) return;
            for (int k = 0; k < expected[it].Count && k < outputs.Count; k++)
            {
                var (file, tensor) = expected[it][k];
                var want = tensor with { Name = outputs[k].Name };
                var c = Comparator.Compare(want, outputs[k]);
                expectationNotes.Add(c.Passed
                    ? $"{file}: the original reproduces it (max abs {Printing.Num(c.MaxAbs)})"
                    : $"{file}: the ORIGINAL does not reproduce it: {c.Problem ?? $"max abs {Printing.Num(c.MaxAbs)}, {c.FailedElements} of {c.Elements} elements beyond tolerance"}");
            }
        });
        return report with { Notes = [.. report.Notes, .. expectationNotes] };
    }

    static Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? Both(
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? a,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? b) => a is null ? b : b is null ? a : a + b;

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
