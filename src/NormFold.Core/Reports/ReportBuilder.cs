using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Reports;

/// <summary>Builds the report records from the decision log and the check report (views of them, nothing more).</summary>
internal static class ReportBuilder
{
    public const string Tool = "normfold";
    public static string? Version => typeof(ReportBuilder).Assembly.GetName().Version?.ToString(3);

    public static FoldSummary Summary(FoldResult result)
    {
        var d = result.Log.Decisions;
        return new FoldSummary(
            d.Count(x => x.AnchorOpType == "BatchNormalization"), d.Count(x => x.AnchorOpType != "BatchNormalization"),
            result.Log.Count(Outcome.Folded), result.Log.Count(Outcome.Replaced), result.Log.Count(Outcome.Left),
            result.OpsBefore.Values.Sum(), result.OpsAfter.Values.Sum());
    }

    public static FoldReport Fold(string input, string? output, FoldResult result, CheckReport? check,
        IReadOnlyList<ErrorHistogram?>? histograms = null, GateResults? gates = null, IReadOnlyList<string>? commandLine = null, int? exitCode = null) =>
        new(Tool, Version, commandLine, exitCode, input, output, Summary(result), result.OpsBefore, result.OpsAfter,
            result.Log.Decisions.Select(Entry).ToList(), check is null ? null : Check(check, histograms), gates);

    public static DecisionEntry Entry(Decision d) =>
        new(d.Graph, d.Anchor, d.AnchorOpType, d.Outcome, d.Rule, d.Target, d.Reason, d.Detail, d.Created, d.Weights.Select(Weight).ToList());

    static WeightEntry Weight(WeightRecord w) => w switch
    {
        ScaledWeight { Outputs: { } o, Inputs: { } i } s => new("scaled", s.Result, s.Source, null,
            $"outputs {Layout(o)} × inputs {Layout(i)}: one factor per block of elements sharing both channels", s.Factors.Length),
        ScaledWeight s => new("scaled", s.Result, s.Source, null, Layout(s.Layout), s.Factors.Length),
        FoldedBias b => new("bias", b.Result, b.Source, null, null, b.Scale.Length),
        ForwardBias f => new("forwardBias", f.Result, f.Source, f.Weight, $"outputs {Layout(f.Outputs)}, inputs {Layout(f.Inputs)}", f.Shift.Length),
        NewConstant c => new("constant", c.Result, null, null, null, null),
        _ => new(w.GetType().Name, w.Result, null, null, null, null),
    };

    static string Layout(Tensors.ChannelLayout l) => l switch
    {
        Tensors.ChannelLayout.Rows => "rows",
        Tensors.ChannelLayout.Columns => "columns",
        Tensors.ChannelLayout.TransposedConv t => $"transposedConv(inputChannels {t.InputChannels}, outputsPerGroup {t.OutputsPerGroup}, groups {t.Groups})",
        Tensors.ChannelLayout.ConvInputs c => $"convInputs(outputChannels {c.OutputChannels}, inputsPerGroup {c.InputsPerGroup}, groups {c.Groups})",
        _ => l.GetType().Name,
    };

    /// <param name="histograms">Per output, in order (null: none collected).</param>
    public static CheckResults Check(CheckReport r, IReadOnlyList<ErrorHistogram?>? histograms = null) => new(
        r.Passed, r.OrtVersion, r.Options.InputProvenance, r.Options.Seed, r.Options.Iterations,
        r.Options.Level.ToString().ToLowerInvariant(), r.Notes,
        r.Outputs.Select((o, i) => Drift(o, histograms is not null && i < histograms.Count ? histograms[i] : null)).ToList(),
        r.FirstDrifting?.Name, r.FirstFailingIteration,
        r.Audit is { } a ? new WeightAuditSummary(a.Passed, a.Tensors, a.Elements, a.Inexact, a.MaxUlp, a.WorstTensor, a.Skipped) : null,
        r.Intermediates.Select(o => Drift(o, null)).ToList(),
        Findings(r), r.Options.DetectDrift, r.SkippedUnchanged, r.NothingToCheck, r.Batches,
        r.Replays.Count > 0 ? r.Replays.Select(o => Drift(o, null)).ToList() : null, r.ReplayedNodes);

    /// <summary>The drifting channels of every compared tensor (verify: the channel-drift detector's findings).</summary>
    static List<ChannelFinding>? Findings(CheckReport r)
    {
        var list = r.Outputs.Concat(r.Intermediates).SelectMany(o => o.Drift.Select(d => Finding(o, d))).ToList();
        return list.Count > 0 ? list : null;
    }

    static ChannelFinding Finding(OutputComparison o, ChannelDrift d) => new(o.Name, 1, d.Channel, d.MaxAbs,
        o.ReferenceMagnitude > 0 ? d.MaxAbs / o.ReferenceMagnitude : d.MaxAbs,
        $"gain {d.Gain:G7} (allowed 1 ± {d.GainThreshold:G3}), offset {d.Offset:G3} (allowed ± {d.OffsetThreshold:G3}), noise {d.Noise:G3}, {d.Elements} elements",
        d.Gain, d.GainThreshold, d.Offset, d.OffsetThreshold, d.Noise, d.Elements, d.Flagged);

    public static TensorDrift Drift(OutputComparison o, ErrorHistogram? histogram) => new(
        o.Name, o.Passed, o.Problem, o.Shape, o.ElementType, new ToleranceUsed(o.Tolerance.Atol, o.Tolerance.Rtol),
        o.MaxAbs, o.MeanAbs, o.MedianAbs, o.P99Abs, o.MaxRel, o.MeanRel, o.MedianRel, o.P99Rel,
        o.ReferenceMagnitude, o.RelativeToMagnitude, o.Cosine, o.WorstIndex, o.WorstReference, o.WorstActual,
        o.MinAtol, o.MinRtol, o.FailedElements, o.Elements, o.PercentilesSampled, histogram,
        o.ChannelsTested, o.DriftingChannels, o.WorstChannel?.Ratio, o.WorstChannel is { } w ? Finding(o, w) : null, o.Amplified);

    public static DriftFigures Figures(CheckResults c)
    {
        var worst = c.Outputs.Where(o => o.Problem is null).MaxBy(o => o.RelativeToMagnitude);
        return new DriftFigures(c.Passed, worst?.RelativeToMagnitude ?? 0, worst?.Name,
            c.Outputs.Where(o => o.Problem is null).Select(o => o.Cosine).DefaultIfEmpty(1).Min(), c.FirstDrifting);
    }
}

/// <summary>Accumulates an <see cref="ErrorHistogram"/> of one output over iterations.</summary>
internal sealed class HistogramBuilder
{
    /// <summary>Decades of |a − r| / max|r|: below 1e-9, [1e-9, 1e-8), …, [1e-1, 1), and 1 or more.</summary>
    public const int FirstDecade = -9;
    static readonly string[] Labels = [.. Enumerable.Range(0, 11).Select(Label)];
    readonly long[] _counts = new long[Labels.Length];
    long _exact, _nonFinite;

    static string Label(int bin) => bin == 0 ? $"<1e{FirstDecade}" : bin == 10 ? "≥1" : $"1e{FirstDecade + bin - 1}";

    public void Add(NamedTensor reference, NamedTensor actual)
    {
        if (!reference.IsFloatingPoint || reference.Count != actual.Count || reference.ElementType != actual.ElementType) return;
        var r = reference.ToDoubles();
        var a = actual.ToDoubles();
        double m = 0;
        foreach (var v in r) if (double.IsFinite(v)) m = Math.Max(m, Math.Abs(v));
        if (m == 0) m = 1;
        for (int i = 0; i < r.Length; i++)
        {
            if (!double.IsFinite(r[i]) || !double.IsFinite(a[i]))
            {
                if (!r[i].Equals(a[i])) _nonFinite++; else _exact++;
                continue;
            }
            double e = Math.Abs(a[i] - r[i]) / m;
            if (e == 0) { _exact++; continue; }
            int bin = e >= 1 ? 10 : Math.Clamp((int)Math.Floor(Math.Log10(e)) - FirstDecade + 1, 0, 9);
            _counts[bin]++;
        }
    }

    public ErrorHistogram Build() => new(_exact, Labels, [.. _counts], _nonFinite);
}
