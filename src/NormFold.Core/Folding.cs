using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold;

public sealed record FoldResult(RewriteLog Log, SortedDictionary<string, int> OpsBefore, SortedDictionary<string, int> OpsAfter)
{
    public bool Changed => Log.Decisions.Any(d => d.Outcome != Outcome.Left);
    /// <summary>The equivalence check of the written model against the original, when one was asked for
    /// (<see cref="Folding.FoldFile"/> with check options).</summary>
    public CheckReport? Check { get; init; }
    /// <summary>Whether the output was written (<see cref="Folding.FoldFile"/>: always without a check; with one, only
    /// when it passed).</summary>
    public bool Written { get; init; }
}

/// <summary>The library entry points: fold a loaded model in place, or fold a file (optionally checking the result in
/// ONNX Runtime and writing it only if it is equivalent), and say what was done.</summary>
public static class Folding
{
    public static FoldResult Fold(OnnxModel model, PipelineOptions? options = null) => Fold(model, options, justLoaded: false);

    /// <summary>With <paramref name="justLoaded"/>, for a model <see cref="OnnxModel.Load(string)"/> has just validated and
    /// nothing has touched since: not validated again.</summary>
    internal static FoldResult Fold(OnnxModel model, PipelineOptions? options, bool justLoaded)
    {
        if (!justLoaded) Graph.ModelValidator.Validate(model); // the model may have been built or changed in memory
        var before = OpCounts.Of(model);
        var log = new Pipeline(options).Run(model);
        return new FoldResult(log, before, OpCounts.Of(model));
    }

    /// <summary>Load, fold, save. The input file is never written. With <paramref name="check"/>, the folded model is
    /// first written beside <paramref name="output"/> under a temporary name, checked against the input in ONNX Runtime
    /// (the weight audit replaying this fold's log when <see cref="CheckOptions.AuditWeights"/> is set), and moved into
    /// place only if the check passes: otherwise nothing is written and <see cref="FoldResult.Written"/> is false.</summary>
    public static FoldResult FoldFile(string input, string output, PipelineOptions? options = null, SaveOptions? save = null,
        CheckOptions? check = null) =>
        Optimistically(optimistic => FoldFileOnce(input, output, (options ?? new PipelineOptions()) with
        {
            DeferWeightArithmetic = true, CheckFiniteWhenComputed = optimistic, // saved next
        }, save, check));

    /// <summary><paramref name="attempt"/>(true): load, fold with <see cref="PipelineOptions.CheckFiniteWhenComputed"/>,
    /// save; if a folded weight overflowed while it was computed (<see cref="Tensors.ScaledWeightOverflow"/>: a fold the
    /// pre-check would have refused), <paramref name="attempt"/>(false) from the start, with the pre-check. What the
    /// first attempt saved was a temporary file, deleted as the exception left <see cref="ModelWriter.Save"/>.</summary>
    internal static T Optimistically<T>(Func<bool, T> attempt)
    {
        try { return attempt(true); }
        catch (Tensors.ScaledWeightOverflow) { return attempt(false); }
    }

    static FoldResult FoldFileOnce(string input, string output, PipelineOptions options, SaveOptions? save, CheckOptions? check)
    {
        using var model = OnnxModel.Load(input);
        var result = Fold(model, options, justLoaded: true);
        if (check is null)
        {
            ModelWriter.Save(model, output, save);
            return result with { Written = true };
        }
        var report = SaveIfEquivalent(model, output, save ?? new SaveOptions(), (staged, label) =>
        {
            using var reference = OnnxModel.Load(input);
            using var candidate = OnnxModel.Load(staged, label);
            return EquivalenceChecker.Check(reference, candidate, check with
            {
                FoldLog = result.Log,
                ReferenceLabel = check.ReferenceLabel ?? $"the original ({input})",
                CandidateLabel = label,
            });
        });
        return result with { Check = report, Written = report.Passed };
    }

    /// <summary>
    /// Writes <paramref name="model"/> into a staging folder beside <paramref name="output"/> (same file names, so external
    /// data locations stay valid), runs <paramref name="check"/>(staged path, label naming the output) on it, and moves
    /// it into place only if <paramref name="accept"/> (default: the check passed) says so. Nothing is left behind either way.
    /// The reference's session is made first, so ONNX Runtime rejecting the staged model is NormFold's bug: an
    /// InvalidOperationException, never InvalidModelException (bad input).
    /// </summary>
    internal static CheckReport SaveIfEquivalent(OnnxModel model, string output, SaveOptions save,
        Func<string, string, CheckReport> check, Func<CheckReport, bool>? accept = null)
    {
        ModelWriter.CheckOutputPath(output);
        string full = Path.GetFullPath(output);
        string dir = Path.GetDirectoryName(full)!;
        var inputs = model.InputFiles();
        void Guard(string target, string name)
        {
            if (inputs.TryGetValue(PathGuard.Resolve(target), out var what))
                throw new InvalidModelException($"{output}: refusing to overwrite {what} with {name}; choose another output path");
        }
        Guard(full, "the folded model");
        ModelWriter.CheckDataFile(model, output, save); // here, naming the output: the staged save names the staged path
        string staging = Path.Combine(dir, $".normfold-{Environment.ProcessId}-{Guid.NewGuid():N}");
        TempFiles.Track(staging, folder: true);
        try
        {
            try { Directory.CreateDirectory(staging); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new InvalidModelException($"{output}: cannot write in '{dir}': {NormFoldIOException.Describe(e)}", e);
            }
            string staged = Path.Combine(staging, Path.GetFileName(full));
            // A data file named into a subfolder of the output's (checked above) goes into the same subfolder of staging.
            if (Path.GetDirectoryName(save.ExternalFileName) is { Length: > 0 } sub) Directory.CreateDirectory(Path.Combine(staging, sub));
            ModelWriter.Save(model, staged, save);
            string label = $"the folded model ({output})";
            CheckReport report;
            try { report = check(staged, label); }
            catch (InvalidModelException e) when (e.Message.StartsWith(label, StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"{e.Message} — the model NormFold wrote is not valid", e);
            }
            if (accept?.Invoke(report) ?? report.Passed)
            {
                var files = Directory.GetFiles(staging, "*", SearchOption.AllDirectories)
                    .Select(f => Path.GetRelativePath(staging, f)).OrderBy(f => f == Path.GetFileName(full)).ToList(); // the model last, after its data
                foreach (var file in files) Guard(Path.Combine(dir, file), $"'{file}'");
                foreach (var file in files) File.Move(Path.Combine(staging, file), Path.Combine(dir, file), overwrite: true);
            }
            return report;
        }
        finally
        {
            try { Directory.Delete(staging, recursive: true); } catch (IOException) { }
            TempFiles.Untrack(staging);
        }
    }
}
