using NormFold.Rewriting;

namespace NormFold.Reports;

// The JSON reports, as records. Serialised by source-generated System.Text.Json (ReportJson), camelCase, enums as
// strings, nulls left out, non-finite numbers as "NaN"/"Infinity". Schemas: docs/schemas/*.schema.json.

/// <summary>`fold` and `inspect` (and one model of a folder run): every decision, op counts, the check and the gates.</summary>
public sealed record FoldReport(
    string Tool,
    string? Version,
    IReadOnlyList<string>? CommandLine,
    int? ExitCode,
    string Input,
    string? Output,
    FoldSummary Summary,
    IReadOnlyDictionary<string, int> OpsBefore,
    IReadOnlyDictionary<string, int> OpsAfter,
    IReadOnlyList<DecisionEntry> Decisions,
    CheckResults? Check,
    GateResults? Gates)
{
    /// <summary>The report of a fold (<paramref name="output"/>: where it was written, or null), with its check if one ran.</summary>
    public static FoldReport Of(string input, string? output, FoldResult result, Verification.CheckReport? check = null) =>
        ReportBuilder.Fold(input, output, result, check);

    public string ToJson() => ReportJson.Serialize(this, ReportJsonContext.Default.FoldReport);
}

/// <summary>Counts derived from the decisions. <see cref="BatchNormalizations"/> counts BN decisions only; the other
/// candidates (normalisation swaps, affine ops) are <see cref="OtherCandidates"/>; folded/replaced/left count all.</summary>
public sealed record FoldSummary(int BatchNormalizations, int OtherCandidates, int Folded, int Replaced, int Left, int NodesBefore, int NodesAfter);

/// <summary>One decision of the log: folded into what, replaced, or left and why.</summary>
public sealed record DecisionEntry(
    string Graph,
    string Anchor,
    string AnchorOpType,
    Outcome Outcome,
    string? Rule,
    string? Target,
    SkipReason? Reason,
    string Detail,
    IReadOnlyList<string> Created,
    IReadOnlyList<WeightEntry> Weights);

/// <summary>What a rewrite did to one tensor (the record the weight audit replays, without its per-channel numbers):
/// <see cref="Kind"/> scaled (a weight scaled per channel along <see cref="Layout"/>; on both sides: per block of
/// elements sharing an output and an input channel), bias (a bias folded), forwardBias (a shift folded forward through
/// <see cref="Weight"/>), or constant (a new constant). <see cref="Channels"/>: how many factors (channels, or blocks).</summary>
public sealed record WeightEntry(string Kind, string Result, string? Source, string? Weight, string? Layout, int? Channels);

/// <summary>An equivalence check: how the inputs were made, and every compared tensor's statistics.</summary>
/// <param name="ChannelDrift">Whether each channel of each compared floating-point tensor was tested for systematic drift.</param>
/// <param name="SkippedUnchanged">Tensors not compared because their producing subgraph is the same in both models.</param>
/// <param name="NothingToCheck">Every output unchanged by construction: ONNX Runtime was not run.</param>
/// <param name="Batches">Batches the intermediates were compared in (each model run in as many segments); 1: one run.</param>
public sealed record CheckResults(
    bool Passed,
    string OrtVersion,
    string Inputs,
    int Seed,
    int Iterations,
    string OrtLevel,
    IReadOnlyList<string> Notes,
    IReadOnlyList<TensorDrift> Outputs,
    string? FirstDrifting,
    int? FirstFailingIteration,
    WeightAuditSummary? WeightAudit,
    IReadOnlyList<TensorDrift> Intermediates,
    IReadOnlyList<ChannelFinding>? ChannelFindings,
    bool ChannelDrift = true,
    int SkippedUnchanged = 0,
    bool NothingToCheck = false,
    int Batches = 1,
    IReadOnlyList<TensorDrift>? Replays = null,
    int ReplayedNodes = 0);

/// <summary>How one tensor of the candidate differs from the reference (the worst iteration).</summary>
/// <param name="ChannelsTested">Channels tested for systematic drift (see README: systematic drift per channel).</param>
/// <param name="DriftingChannels">Tested channels whose gain or offset is beyond rounding noise.</param>
/// <param name="WorstChannelRatio">The tested channel nearest its thresholds (above 1: beyond them).</param>
/// <param name="WorstChannel">That channel's figures (gain, offset, their thresholds, noise), flagged or not.</param>
public sealed record TensorDrift(
    string Name,
    bool Passed,
    string? Problem,
    string Shape,
    string ElementType,
    ToleranceUsed Tolerance,
    double MaxAbs,
    double MeanAbs,
    double MedianAbs,
    double P99Abs,
    double MaxRel,
    double MeanRel,
    double MedianRel,
    double P99Rel,
    double ReferenceMagnitude,
    double RelativeToMagnitude,
    double Cosine,
    IReadOnlyList<long> WorstIndex,
    double WorstReference,
    double WorstActual,
    double MinAtol,
    double MinRtol,
    long FailedElements,
    long Elements,
    bool PercentilesSampled,
    ErrorHistogram? Histogram,
    int ChannelsTested = 0,
    int DriftingChannels = 0,
    double? WorstChannelRatio = null,
    ChannelFinding? WorstChannel = null,
    bool Amplified = false);

public sealed record ToleranceUsed(double Atol, double Rtol);

/// <summary>Counts of elements by |actual − reference| / max|reference|, over every iteration: <see cref="Exact"/>
/// equal, then one bin per decade from below 1e-9 to 1 and above, and <see cref="NonFinite"/> (NaN or ∞ in either).
/// <see cref="Labels"/> name the bins of <see cref="Counts"/>.</summary>
public sealed record ErrorHistogram(long Exact, IReadOnlyList<string> Labels, IReadOnlyList<long> Counts, long NonFinite);

/// <summary>The weight audit: folded weights recomputed from the original, and how many elements differ.</summary>
public sealed record WeightAuditSummary(bool Passed, int Tensors, long Elements, long Inexact, double MaxUlp, string? WorstTensor, IReadOnlyList<string> Skipped);

/// <summary>A per-channel finding of the check: a channel of a tensor whose drift stands out.</summary>
public sealed record ChannelFinding(string Tensor, int Axis, long Channel, double MaxAbs, double RelativeToMagnitude, string? Detail,
    double? Gain = null, double? GainThreshold = null, double? Offset = null, double? OffsetThreshold = null, double? Noise = null, long? Elements = null,
    bool? Flagged = null);

/// <summary>The gates asked for and what failed them.</summary>
public sealed record GateResults(bool Passed, IReadOnlyList<string> Gates, IReadOnlyList<GateFailure> Failures);

/// <summary>One gate failure: which gate, what (a node, a tensor), and why.</summary>
public sealed record GateFailure(string Gate, string Subject, string Reason);

/// <summary>`check`: the two models, the check, and the gates.</summary>
public sealed record CheckFileReport(
    string Tool,
    string? Version,
    IReadOnlyList<string>? CommandLine,
    int ExitCode,
    string Reference,
    string Candidate,
    CheckResults Check,
    GateResults? Gates)
{
    /// <summary>The report of a check of <paramref name="candidate"/> against <paramref name="reference"/>.</summary>
    public static CheckFileReport Of(string reference, string candidate, Verification.CheckReport check) =>
        new(ReportBuilder.Tool, ReportBuilder.Version, null, check.Passed ? 0 : 2, reference, candidate, ReportBuilder.Check(check), null);

    public string ToJson() => ReportJson.Serialize(this, ReportJsonContext.Default.CheckFileReport);
}

/// <summary>`fold FOLDER`: totals, the overall exit code, and one entry per model.</summary>
public sealed record FolderReport(
    string Tool,
    string? Version,
    IReadOnlyList<string>? CommandLine,
    int ExitCode,
    string Input,
    string Output,
    int Jobs,
    double Seconds,
    FolderTotals Totals,
    IReadOnlyList<ModelEntry> Models)
{
    public string ToJson() => ReportJson.Serialize(this, ReportJsonContext.Default.FolderReport);
}

public sealed record FolderTotals(
    int Models, int Written, int Failed, int InternalErrors, int InvalidInputs, int ChecksFailed, int GatesFailed,
    int BatchNormalizations, int Folded, int Replaced, int Left, int NodesBefore, int NodesAfter);

/// <summary>One model of a folder run: where it went, its exit code and error, its drift figures and its fold report.</summary>
public sealed record ModelEntry(string Input, string? Output, int ExitCode, string? Error, double Seconds, DriftFigures? Drift, FoldReport? Fold);

/// <summary>A check's headline numbers: the worst output's max |error| / max|reference| and cosine, and the first
/// intermediate to drift.</summary>
public sealed record DriftFigures(bool Passed, double MaxRelativeToMagnitude, string? WorstOutput, double MinCosine, string? FirstDrifting);
