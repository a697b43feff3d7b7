using System.Diagnostics;
using System.Text;
using NormFold.Tests.Builders;
using Xunit.Abstractions;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// Differential properties: one model folded two ways must give the same decisions and the same bytes.
/// The optimistic finite check (<see cref="FiniteEdge"/>): NORMFOLD_DIFF_RUNS cases (default 150), seeds from
/// NORMFOLD_DIFF_SEED·1,000,000 (default 1), or NORMFOLD_DIFF_CASE=SEED (one case, folder kept).
/// </summary>
public class DifferentialFuzzTests(ITestOutputHelper log)
{
    static int Env(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(name), out int v) ? v : fallback;

    [Fact]
    public void The_optimistic_finite_check_decides_and_writes_as_the_pre_check()
    {
        string root = Path.Combine(Path.GetTempPath(), "normfold-diff", Guid.NewGuid().ToString("N"));
        int? only = Env("NORMFOLD_DIFF_CASE", -1) is >= 0 and var one ? one : null;
        int runs = Env("NORMFOLD_DIFF_RUNS", 150), first = Env("NORMFOLD_DIFF_SEED", 1) * 1_000_000;
        var seeds = only is { } s ? [s] : Enumerable.Range(first, runs);
        var sw = Stopwatch.StartNew();
        var verdicts = new List<FiniteEdge.Verdict>();
        try
        {
            foreach (int seed in seeds)
            {
                var c = FiniteEdge.Make(seed);
                verdicts.Add(FiniteEdge.Check(c, Path.Combine(root, seed.ToString())));
                if (only is null) Directory.Delete(Path.Combine(root, seed.ToString()), true);
            }
        }
        finally
        {
            if (only is null) try { Directory.Delete(root, true); } catch (IOException) { }
        }
        string summary = Summary(verdicts, sw.Elapsed) + (only is null ? "" : $"\n{verdicts[0].Case}\nfolder kept: {root}\n" + verdicts[0].PreChecked.Log);
        log.WriteLine(summary);
        if (Environment.GetEnvironmentVariable("NORMFOLD_DIFF_SUMMARY") is { Length: > 0 } file) File.WriteAllText(file, summary);
        Assert.True(verdicts.All(v => v.Divergences.Count == 0), summary);
        if (only is null)
        {
            // The generator must keep overflows common but not universal (the point of the property).
            double share = verdicts.Count(v => v.Refused) / (double)verdicts.Count;
            Assert.True(share is > 0.15 and < 0.6, $"share of cases with an overflowing fold {share:P0}: the generator drifted\n{summary}");
        }
    }

    /// <summary>Divergences the property found (each failed before a save checked the deferred folds it does not
    /// write): a fold whose W·s overflows, superseded in the same run by a later fold into the same op that composes its
    /// factors from the original weight — the superseded W·s was never computed, so never checked, and the run kept
    /// folds the pre-check refuses.</summary>
    [Theory]
    [InlineData(1000027)] // float grouped ConvTranspose → Mul → BN (W·s overflows) → BN: both folded, the second composed from W
    [InlineData(1000359)] // float16 MatMul → BN (overflows) → BN
    [InlineData(1000212)] // double both sides: Conv → BN → Mul folded backward (overflows), then x → Mul forward into the Conv
    [InlineData(1000271)] // float16 grouped Conv weight shared by two Convs: BN → Div (overflows) → BN on the first
    [InlineData(1000314)] // bfloat16 Gemm weight shared by two Gemms: BN (overflows) → BN → Mul on the second
    [InlineData(1000466)] // double, in an If branch: MatMul → BN → BN (overflows) → BN, external data in and out
    public void Superseded_folds_are_checked(int seed)
    {
        string dir = Path.Combine(Path.GetTempPath(), "normfold-diff", Guid.NewGuid().ToString("N"));
        try
        {
            var v = FiniteEdge.Check(FiniteEdge.Make(seed), dir);
            Assert.True(v.Divergences.Count == 0, string.Join("\n", v.Divergences));
            Assert.True(v.OptimisticThrew);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The smallest case: Conv → BN (γ = 8: W·8 overflows float) → BN (γ = 1/16). The pre-check refuses the
    /// first fold (so the second BN has no Conv to fold into); optimistically, the first fold's W·8 was deferred, the
    /// second composed W·8·(1/16) = W·0.5 from W and superseded it, and nothing computed W·8: both BNs were folded.</summary>
    [Fact]
    public void A_fold_superseded_by_a_second_fold_into_the_same_conv_is_still_checked()
    {
        var g = NormFold.Tests.Rewriting.FoldedValueNotFiniteTests.WithBn("Conv", GraphBuilder.F32, 8, 1 - 1e-5, w: 1e38);
        g.Graph.Output.Clear();
        g.Bn("y", 4, "z", GraphBuilder.F32);
        g.SetInit("z.gamma", GraphBuilder.F32, [4], [1.0 / 16, 1, 1, 1]);
        g.SetInit("z.var", GraphBuilder.F32, [4], [1 - 1e-5, 1, 1, 1]);
        g.Output("z", GraphBuilder.F32, null);
        var c = new FiniteEdge.Case(0, g.Proto, "conv-bn-bn", false, new NormFold.Onnx.SaveOptions(), new NormFold.Rewriting.PipelineOptions());
        string dir = Path.Combine(Path.GetTempPath(), "normfold-diff", Guid.NewGuid().ToString("N"));
        try
        {
            var v = FiniteEdge.Check(c, dir);
            Assert.Contains("FoldedValueNotFinite", v.PreChecked.Log);
            Assert.True(v.Divergences.Count == 0, string.Join("\n", v.Divergences));
            Assert.True(v.OptimisticThrew);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The write path (<see cref="WriteEdge"/>): what fold writes is Google.Protobuf's serialisation of the same
    /// fold made in memory. NORMFOLD_WRITE_RUNS cases (default 16), NORMFOLD_WRITE_SEED, NORMFOLD_WRITE_CASE=SEED.</summary>
    [Fact]
    public void Written_models_are_protobufs_serialisation_of_the_fold()
    {
        string root = Path.Combine(Path.GetTempPath(), "normfold-write", Guid.NewGuid().ToString("N"));
        int? only = Env("NORMFOLD_WRITE_CASE", -1) is >= 0 and var one ? one : null;
        int runs = Env("NORMFOLD_WRITE_RUNS", 16), first = Env("NORMFOLD_WRITE_SEED", 1) * 1_000_000;
        var seeds = only is { } s ? [s] : Enumerable.Range(first, runs);
        var sw = Stopwatch.StartNew();
        var failures = new List<string>();
        long bytes = 0;
        int count = 0;
        try
        {
            foreach (int seed in seeds)
            {
                var c = WriteEdge.Make(seed);
                string dir = Path.Combine(root, seed.ToString());
                var problems = WriteEdge.Check(c, dir);
                bytes += new FileInfo(Path.Combine(dir, "m.onnx")).Length;
                count++;
                if (problems.Count > 0) failures.Add($"{c}: repro NORMFOLD_WRITE_CASE={seed}\n    " + string.Join("\n    ", problems));
                if (only is null) Directory.Delete(dir, true);
            }
        }
        finally
        {
            if (only is null) try { Directory.Delete(root, true); } catch (IOException) { }
        }
        string summary = $"write-edge: {count} cases ({bytes / 1e6:0.0} MB of input) in {sw.Elapsed.TotalSeconds:0.0} s; {failures.Count} differing\n"
            + string.Join("\n", failures.Take(30)) + (only is null ? "" : $"\nfolder kept: {root}");
        log.WriteLine(summary);
        if (Environment.GetEnvironmentVariable("NORMFOLD_WRITE_SUMMARY") is { Length: > 0 } file) File.WriteAllText(file, summary);
        Assert.True(failures.Count == 0, summary);
    }

    /// <summary>A disabled rule is asked whether it would fold ("RuleDisabled: … would have folded"), and its plan is
    /// never applied: optimistically its overflow was never checked, so the report said it would have folded what the
    /// pre-check refuses, and the BN stayed a BN where the pre-checked run made it Mul + Add. Ids from the property, then
    /// the smallest case: Conv → BN (γ = 8, |W| ≈ 1e38) with BatchNormIntoConv disabled.</summary>
    [Theory]
    [InlineData(30000355)] // double MatMul → BN (overflows) → BN, BatchNormIntoMatMul disabled
    [InlineData(30002847)] // float16, in an If branch, BatchNormIntoMatMul disabled
    [InlineData(30002900)] // float16 shared ConvTranspose weight, AffineIntoConvTranspose disabled
    [InlineData(30001256)] // bfloat16 shared MatMul weight, AffineIntoMatMul disabled
    public void Disabled_rules_are_probed_with_the_pre_check(int seed)
    {
        string dir = Path.Combine(Path.GetTempPath(), "normfold-diff", Guid.NewGuid().ToString("N"));
        try
        {
            var v = FiniteEdge.Check(FiniteEdge.Make(seed), dir);
            Assert.True(v.Divergences.Count == 0, string.Join("\n", v.Divergences));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_disabled_rule_would_not_have_folded_what_the_pre_check_refuses()
    {
        var g = NormFold.Tests.Rewriting.FoldedValueNotFiniteTests.WithBn("Conv", GraphBuilder.F32, 8, 1 - 1e-5, w: 1e38);
        var options = new NormFold.Rewriting.PipelineOptions { DisabledRules = new HashSet<string> { "BatchNormIntoConv" } };
        var c = new FiniteEdge.Case(0, g.Proto, "conv-bn", false, new NormFold.Onnx.SaveOptions(), options);
        string dir = Path.Combine(Path.GetTempPath(), "normfold-diff", Guid.NewGuid().ToString("N"));
        try
        {
            var v = FiniteEdge.Check(c, dir);
            Assert.Contains("Replaced BatchNormToMulAdd →  FoldedValueNotFinite", v.PreChecked.Log);
            Assert.True(v.Divergences.Count == 0, string.Join("\n", v.Divergences));
        }
        finally { Directory.Delete(dir, true); }
    }

    internal static string Summary(List<FiniteEdge.Verdict> verdicts, TimeSpan took)
    {
        var sb = new StringBuilder();
        int bad = verdicts.Count(v => v.Divergences.Count > 0);
        sb.AppendLine($"finite-edge: {verdicts.Count} cases in {took.TotalSeconds:0.0} s; {bad} diverging");
        sb.AppendLine($"  pre-check refused a fold (FoldedValueNotFinite): {verdicts.Count(v => v.Refused)}; " +
                      $"one optimistic attempt threw ScaledWeightOverflow: {verdicts.Count(v => v.OptimisticThrew)} " +
                      $"(of which the pre-check refused nothing: {verdicts.Count(v => v.OptimisticThrew && !v.Refused)}); " +
                      $"input refused: {verdicts.Count(v => v.PreChecked.Error != null)}");
        var spurious = verdicts.Where(v => v.OptimisticThrew && !v.Refused).Select(v => v.Case.Seed).Take(10).ToList();
        if (spurious.Count > 0) sb.AppendLine($"  threw where the log shows no FoldedValueNotFinite (a refusal a later rule of the phase overrode): {string.Join(", ", spurious)}");
        foreach (var v in verdicts.Where(v => v.Divergences.Count > 0).Take(30))
        {
            sb.AppendLine($"{v.Case}: repro NORMFOLD_DIFF_CASE={v.Case.Seed}");
            foreach (var d in v.Divergences) sb.AppendLine("    " + d);
        }
        return sb.ToString();
    }
}
