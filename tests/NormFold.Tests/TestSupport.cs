using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Tests;

/// <summary>Folding a copy, and the ORT equivalence assertion every positive test makes.</summary>
public static class TestSupport
{
    public static string RepoRoot { get; } = FindRoot();
    public static string ModelsDir => Path.Combine(RepoRoot, "tests", "models");

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "NormFold.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("NormFold.sln not found above the test binaries");
    }

    /// <summary>Folds a clone; the original stays as it was.</summary>
    public static (OnnxModel Folded, FoldResult Result) Fold(OnnxModel original, PipelineOptions? options = null)
    {
        var copy = new OnnxModel(original.Proto.Clone(), original.SourcePath);
        var result = Folding.Fold(copy, options);
        return (copy, result);
    }

    public static Decision Single(FoldResult r) => Assert.Single(r.Log.Decisions);

    public static Decision AssertLeft(FoldResult r, SkipReason reason, string? anchor = null)
    {
        var d = anchor is null ? Single(r) : r.Log.Decisions.Single(x => x.Anchor == anchor);
        Assert.True(d.Outcome == Outcome.Left && d.Reason == reason, $"expected left for {reason}, got {d.Outcome} {d.Reason}: {d.Detail}");
        Assert.False(string.IsNullOrWhiteSpace(d.Detail));
        return d;
    }

    public static int Count(OnnxModel m, string op) => OpCounts.Of(m).GetValueOrDefault(op);

    /// <summary>
    /// Runs both models in ORT with optimisations disabled on the same seeded inputs and asserts every output agrees
    /// within the default tolerance (scaled by the output's magnitude); also asserts output names are unchanged.
    /// </summary>
    public static CheckReport AssertEquivalent(OnnxModel original, OnnxModel folded, int iterations = 2,
        IReadOnlyDictionary<string, long[]>? shapes = null)
    {
        Assert.Equal(original.Proto.Graph.Output.Select(o => o.Name), folded.Proto.Graph.Output.Select(o => o.Name));
        var report = EquivalenceChecker.Check(original, folded, new CheckOptions { Iterations = iterations, Shapes = shapes ?? new Dictionary<string, long[]>() });
        Assert.True(report.Passed, "not equivalent: " + string.Join("; ", report.Outputs.Concat(report.Intermediates).Where(o => !o.Passed).Select(o =>
            $"{o.Name}: {o.Problem ?? $"max abs {o.MaxAbs:G4} (atol {o.Tolerance.Atol:G4}), worst {o.WorstActual} vs {o.WorstReference}"}")));
        return report;
    }

    /// <summary>A session over the model as it is in memory (written to a temp folder when it has external data).</summary>
    internal static OrtRunner Runner(OnnxModel m) => SharedTensors.Runner(m, [], OrtLevel.Disable);

    static readonly string TempRoot = Path.Combine(Path.GetTempPath(), "normfold-tests");
    // Nothing deletes a test's folder (a failing test's files are its evidence), so the first TempDir of a test process
    // removes those a run older than StaleAfter left (runs last minutes; 640 folders, ~0.8 GB per suite run).
    static readonly Lazy<int> StaleSwept = new(() => SweepStale(TempRoot, StaleAfter));
    internal static readonly TimeSpan StaleAfter = TimeSpan.FromHours(6);

    public static string TempDir()
    {
        _ = StaleSwept.Value;
        string dir = Path.Combine(TempRoot, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Deletes the folders directly under <paramref name="root"/> not written for <paramref name="age"/>; returns
    /// how many. One another process is deleting or still holds is left.</summary>
    internal static int SweepStale(string root, TimeSpan age)
    {
        if (!Directory.Exists(root)) return 0;
        int swept = 0;
        DateTime before = DateTime.UtcNow - age;
        foreach (string dir in Directory.EnumerateDirectories(root))
            try
            {
                if (Directory.GetLastWriteTimeUtc(dir) >= before) continue;
                Directory.Delete(dir, recursive: true);
                swept++;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return swept;
    }

    /// <summary>Folds and asserts: no BN left, output names unchanged, outputs equivalent in ORT, every tensor the fold
    /// made bit-identical to the exact computation (the weight audit replaying the log).</summary>
    public static (OnnxModel Folded, FoldResult Result) FoldAndCheck(OnnxModel original, PipelineOptions? options = null,
        IReadOnlyDictionary<string, long[]>? shapes = null)
    {
        var (folded, result) = Fold(original, options);
        Assert.All(result.Log.Decisions, d => Assert.Equal(Outcome.Folded, d.Outcome));
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        AssertEquivalent(original, folded, shapes: shapes);
        AssertAuditPasses(original, folded, result);
        return (folded, result);
    }

    /// <summary>A fold's output as FoldAndCheck asserts it: no BN left, outputs equivalent in ORT, the audit exact.</summary>
    public static void AssertFoldPasses(OnnxModel original, OnnxModel folded, FoldResult result)
    {
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        AssertEquivalent(original, folded);
        AssertAuditPasses(original, folded, result);
    }

    /// <summary>The weight audit replays every record of the log: all bit-identical, none skipped.</summary>
    public static WeightAuditResult AssertAuditPasses(OnnxModel original, OnnxModel folded, FoldResult result)
    {
        var audit = WeightAudit.Run(original, folded, result.Log);
        Assert.Empty(audit.Skipped);
        Assert.Equal(0, audit.Inexact);
        Assert.Equal(result.Log.Decisions.SelectMany(d => d.Weights).Count() > 0, audit.Tensors > 0);
        return audit;
    }
}
