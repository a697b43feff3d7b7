using System.Text.Json.Serialization;
using NormFold.Tensors;

namespace NormFold.Rewriting;

/// <summary>
/// What a rewrite did to one tensor, exactly enough to recompute it from the original model: the weight audit replays
/// these (in double, rounded once to the stored type) and compares the result bit for bit. Source names are tensors
/// of the original model, result names tensors of the rewritten one, both in the decision's graph.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(ScaledWeight), "scaled")]
[JsonDerivedType(typeof(FoldedBias), "bias")]
[JsonDerivedType(typeof(ForwardBias), "forwardBias")]
[JsonDerivedType(typeof(NewConstant), "constant")]
public abstract record WeightRecord(string Result)
{
    /// <summary>The tensor an earlier fold of this run made for the same op, which this one replaces: this record
    /// computes from the original's tensors what both folds together did, rounded once (that tensor is gone).</summary>
    public string? Replaces { get; init; }
}

/// <summary>W'[i] = W[i]·Factors[channel(i)], channel(i) given by <paramref name="Layout"/> (output channels for a
/// fold into the producer, input channels for a fold into the consumer). A weight scaled on both sides (folds into its
/// producer and its consumer) has <see cref="Outputs"/> and <see cref="Inputs"/>: then Layout is Rows over blocks of
/// consecutive elements that share an output and an input channel, one factor (their product) per block.</summary>
public sealed record ScaledWeight(string Source, string Result, ChannelLayout Layout,
    [property: JsonIgnore] double[] Factors) : WeightRecord(Result)
{
    public ChannelLayout? Outputs { get; init; }
    public ChannelLayout? Inputs { get; init; }
}

/// <summary>b'[r, c] = Scale[c]·SourceFactor·b[r, c] + Shift[c] over the result's [N] or [M, N] elements; b (scalar,
/// [1], [N], [1, N], [M, 1] or [M, N]) broadcasts along the last axis; an absent <paramref name="Source"/> is 0.</summary>
public sealed record FoldedBias(string? Source, string Result, double SourceFactor,
    [property: JsonIgnore] double[] Scale, [property: JsonIgnore] double[] Shift) : WeightRecord(Result);

/// <summary>A shift folded forward through a linear op (and maybe an affine map folded backward after it):
/// b'[r, o] = Scale[o]·(SourceFactor·b[r, o] + f[o]) + OutShift[o], f[o] = Σ_{i of output o} W[i]·Shift[input(i)]
/// accumulated in element order from 0; W the op's original weight, <paramref name="Outputs"/> mapping its elements to
/// output channels and <paramref name="Inputs"/> to input channels; b broadcasts as in <see cref="FoldedBias"/>, an
/// absent <paramref name="Source"/> is 0; Scale null: all 1, OutShift null: all 0.</summary>
public sealed record ForwardBias(string? Source, string Weight, string Result, ChannelLayout Outputs, ChannelLayout Inputs,
    [property: JsonIgnore] double[] Shift) : WeightRecord(Result)
{
    public double SourceFactor { get; init; } = 1.0;
    [JsonIgnore] public double[]? Scale { get; init; }
    [JsonIgnore] public double[]? OutShift { get; init; }
}

/// <summary>A new constant with these values (e.g. the Mul and Add constants replacing a BN), rounded once.</summary>
public sealed record NewConstant(string Result, [property: JsonIgnore] double[] Values) : WeightRecord(Result);
