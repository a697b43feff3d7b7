using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.BatchNorm;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// A linear op's weight and bias relative to the ORIGINAL model's, after every fold of this run into it, in double:
///   W[i]    = W0[i]·Sout[out(i)]·Sin[in(i)]
///   b[r, o] = Sout[o]·(F·b0[r, o] + Σ_{i of output o} W0[i]·G[in(i)]) + Tout[o]     (b0 absent: 0; b0 broadcasts
///             along the last axis as it did: scalar, [1], [N], [1,N], [M,1], [M,N])
/// A fold composes its chain into this state and computes W and b from W0 and b0, rounded once: folding Conv → BN →
/// BN, or X → Mul → Conv → BN, one step at a time gives the same bits as folding everything at once.
/// Null arrays: all 1 (Sout, Sin) or all 0 (Tout, G). <paramref name="Inputs"/> is known once a forward fold saw it.
/// <paramref name="Weight"/> and <paramref name="Bias"/> name the op's current tensors (a fold that finds other names
/// starts afresh from those).
/// </summary>
internal sealed record LinearState(TensorProto W0, TensorProto? B0, double F, ChannelLayout Outputs, long OutputChannels,
    ChannelLayout? Inputs, long InputChannels, double[]? Sout, double[]? Tout, double[]? Sin, double[]? G, string Weight, string? Bias)
{
    /// <summary>The op's state: the one recorded by an earlier fold of this run when its weight and bias are still
    /// the tensors that fold made, else the op as it is (W0 = its weight, b0 = its bias, F = its bias factor).</summary>
    public static LinearState Of(RewriteContext context, NodeProto node, TensorProto weight, TensorProto? bias, double biasFactor,
        ChannelLayout outputs, long outputChannels)
    {
        if (context.Folds.TryGetValue(node, out var s) && s.Weight == weight.Name && s.Bias == bias?.Name) return s;
        return new LinearState(weight, bias, biasFactor, outputs, outputChannels, null, 0, null, null, null, null, weight.Name, bias?.Name);
    }

    /// <summary>Then y ↦ s·y + t on the op's output channels (s, t of one value per channel or one for all).</summary>
    public LinearState ThenOutput(ChannelAffine map)
    {
        if (OutputChannels == 0) return this with { Sout = [], Tout = [] }; // nothing to scale
        var composed = new ChannelAffine(Sout ?? [1.0], Tout ?? [0.0]).Then(map);
        return this with { Sout = Expand(composed.Scale, OutputChannels), Tout = Expand(composed.Shift, OutputChannels) };
    }

    /// <summary>x ↦ s·x + t on the op's input channels first; α multiplies the shift's contribution (Gemm).</summary>
    public LinearState AfterInput(ChannelAffine map, ChannelLayout inputs, long inputChannels, double alpha)
    {
        if (inputChannels == 0) return this with { Inputs = inputs, InputChannels = 0, Sin = [] };
        double[] s = Expand(map.Scale, inputChannels), t = Expand(map.Shift, inputChannels);
        var sin = new double[inputChannels];
        var g = new double[inputChannels];
        for (long k = 0; k < inputChannels; k++)
        {
            double before = Sin?[k] ?? 1.0;
            sin[k] = before * s[k];
            g[k] = (G?[k] ?? 0.0) + alpha * (before * t[k]);
        }
        return this with { Inputs = inputs, InputChannels = inputChannels, Sin = sin, G = t.Any(v => v != 0) || G is not null ? g : null };
    }

    /// <summary>Whether W differs from W0.</summary>
    public bool Scales => Sout?.Any(v => v != 1.0) == true || Sin?.Any(v => v != 1.0) == true;

    /// <summary>Whether b differs from b0 (then a new bias tensor is needed).</summary>
    public bool ChangesBias => Tout?.Any(v => v != 0.0) == true || G is not null
        || B0 is not null && (F != 1.0 || Sout?.Any(v => v != 1.0) == true);

    /// <summary>W's factors: per output or input channel, or when both scale, one per block of elements that share
    /// both channels (Rows layout over those blocks).</summary>
    public (ChannelLayout Layout, double[] Factors) WeightFactors()
    {
        if (Sin is null) return (Outputs, Sout ?? Ones(OutputChannels));
        if (Sout is null || Sout.All(v => v == 1.0)) return (Inputs!, Sin);
        long count = TensorData.ElementCount(W0);
        long block = Block(Outputs, OutputChannels, count);
        block = Gcd(block, Block(Inputs!, InputChannels, count));
        var f = new double[count / Math.Max(block, 1)];
        for (long j = 0; j < f.Length; j++)
        {
            long i = j * block;
            f[j] = Sout[ChannelIndex.Of(Outputs, i, count, OutputChannels)] * Sin[ChannelIndex.Of(Inputs!, i, count, InputChannels)];
        }
        return (new ChannelLayout.Rows(), f);
    }

    /// <summary>b as defined above, or a refusal-worthy description of why b0 does not broadcast.</summary>
    public bool TryBias(Onnx.OnnxModel model, out double[] values, out long[] dims, out string whyNot)
    {
        double[]? b0 = B0 is null ? null : model.ReadDoubles(B0);
        var s = Sout ?? Ones(OutputChannels);
        var t = Tout ?? new double[OutputChannels];
        if (G is null) return ChannelBias.TryFold(B0, b0, F, s, t, out values, out dims, out whyNot);
        // Σ_{i of o} W0[i]·G[in(i)], accumulated in element order from 0 (the weight audit replays it so).
        var w = model.ReadDoubles(W0);
        var forward = new double[OutputChannels];
        for (long i = 0; i < w.Length; i++)
            forward[ChannelIndex.Of(Outputs, i, w.Length, OutputChannels)] += w[i] * G[ChannelIndex.Of(Inputs!, i, w.Length, InputChannels)];
        if (!ChannelBias.TryFold(B0, b0, F, Ones(OutputChannels), forward, out var inner, out dims, out whyNot)) { values = []; return false; }
        // inner[r, o] = 1·F·b0[r, o] + forward[o] = F·b0[r, o] + forward[o] exactly; then Sout·inner + Tout.
        values = new double[inner.Length];
        for (long i = 0; i < inner.Length; i++)
        {
            long o = i % OutputChannels;
            values[i] = s[o] * inner[i] + t[o];
        }
        return true;
    }

    /// <summary>Null when W·factors is finite in W's type wherever W0 is; else a refusal naming the element.</summary>
    public Match.Refused? WeightNotFinite(Onnx.OnnxModel model, NodeProto node)
    {
        if (!Scales) return null;
        var (layout, factors) = WeightFactors();
        return FoldedValues.ScaledWeightNotFinite(model, W0, layout, factors) is { } bad
            ? Match.Refuse(SkipReason.FoldedValueNotFinite, $"{Attributes.Describe(node)} weight '{W0.Name}'[{bad}] times the folded scale is not finite as {ElementType.Name(W0.DataType)}")
            : null;
    }

    /// <summary>
    /// Writes the new weight (when <paramref name="rescale"/>: this fold changes it) into input 1 of
    /// <paramref name="node"/>, and the new bias values as a tensor (when given) whose name is returned for the caller to
    /// wire; adds their names and records (each replacing the tensor an earlier fold of this run made). Returns the
    /// state naming the new tensors.
    /// </summary>
    public LinearState Write(GraphEditor editor, NodeProto node, bool rescale, double[]? bias, long[] biasDims, int biasType,
        string suffix, List<string> created, List<WeightRecord> records, out string? newBias)
    {
        string weight = Weight;
        if (rescale && Scales)
        {
            var (layout, factors) = WeightFactors();
            // Scaled on both sides: the record names both layouts (its own is Rows over the blocks they share).
            bool both = Sin is not null && Sout is not null && Sout.Any(v => v != 1.0);
            var scaled = FoldedValues.ScaledWeight(editor, W0, layout, factors, suffix) with
            {
                Replaces = Weight != W0.Name ? Weight : null, Outputs = both ? Outputs : null, Inputs = both ? Inputs : null,
            };
            editor.SetInput(node, 1, scaled.Result);
            created.Add(scaled.Result);
            records.Add(scaled);
            weight = scaled.Result;
        }
        newBias = null;
        if (bias is not null)
        {
            string baseName = B0 is null ? W0.Name + "_bias" + suffix : B0.Name + suffix;
            newBias = editor.AddInitializer(TensorData.Create("", biasType, biasDims, bias), baseName);
            string? replaces = Bias != B0?.Name ? Bias : null;
            WeightRecord record = G is null
                ? new FoldedBias(B0?.Name, newBias, F, Sout ?? Ones(OutputChannels), Tout ?? new double[OutputChannels])
                : new ForwardBias(B0?.Name, W0.Name, newBias, Outputs, Inputs!, G) { SourceFactor = F, Scale = Sout, OutShift = Tout };
            created.Add(newBias);
            records.Add(record with { Replaces = replaces });
        }
        return this with { Weight = weight, Bias = newBias ?? Bias };
    }

    static long Block(ChannelLayout layout, long channels, long count) => layout switch
    {
        ChannelLayout.Rows => count / Math.Max(channels, 1),
        ChannelLayout.TransposedConv t => count / Math.Max(t.InputChannels * t.OutputsPerGroup, 1),
        ChannelLayout.ConvInputs c => count / Math.Max(c.OutputChannels * c.InputsPerGroup, 1),
        _ => 1,
    };

    static long Gcd(long a, long b) => b == 0 ? a : Gcd(b, a % b);

    static double[] Ones(long n) => Enumerable.Repeat(1.0, (int)n).ToArray();

    static double[] Expand(double[] v, long n) => v.Length == n ? v : Enumerable.Repeat(v[0], (int)n).ToArray();
}
