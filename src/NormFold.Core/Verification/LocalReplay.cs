using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Verification;

/// <summary>The reference with the candidate's rewritten nodes spliced in (<see cref="LocalReplay"/>), and which of
/// its tensors replays which of the reference's.</summary>
/// <param name="Replayed">Reference tensor → the replayed tensor compared with it.</param>
/// <param name="Nodes">Rewritten nodes replayed.</param>
/// <param name="Shifts">Reference tensor → the additive constant the rewritten node making it stores (see
/// <see cref="ReplayShift"/>).</param>
internal sealed record ReplayPlan(OnnxModel Reference, IReadOnlyDictionary<string, string> Replayed, int Nodes,
    IReadOnlyDictionary<string, ReplayShift> Shifts);

/// <summary>
/// The additive constant a rewritten node stores in the tensor's type — a Conv/ConvTranspose/Gemm bias, the constant of
/// an Add or Sub (a standalone BN's t) — with its dims (broadcast against the tensor it makes, right-aligned). Rounded
/// once to the type, it moves the channel's offset by up to u·|c|, and the factor rounded with it moves it by up to
/// u·|c| more where the two cancel (y = s·x + t with t ≈ −s·x̄: float16 s = 148, t = 9.8, output mean 0.05): an error
/// the channel's own values do not show.
/// </summary>
/// <param name="Dims">null: one value per channel by the op's definition (a Conv/ConvTranspose bias [M]).</param>
internal sealed record ReplayShift(long[]? Dims, double[] Values)
{
    /// <summary>The rewritten node's rounded weights and the reference tensor they multiply (null: not known).</summary>
    public LinearInput? Input { get; init; }

    /// <summary>|c| per channel of a tensor of <paramref name="shape"/> (axis 1); null when c does not broadcast along
    /// that axis alone (nor is a scalar).</summary>
    public double[]? PerChannel(long[] shape, int channels)
    {
        if (Values.Length == 1) return Enumerable.Repeat(Math.Abs(Values[0]), channels).ToArray();
        if (Dims is null) return Values.Length == channels ? Values.Select(Math.Abs).ToArray() : null;
        return Values.Length == channels && AlongChannels(Dims, shape) ? Values.Select(Math.Abs).ToArray() : null;
    }

    /// <summary>Whether a constant of <paramref name="dims"/> broadcasts against a tensor of <paramref name="shape"/>
    /// (right-aligned) along axis 1 alone.</summary>
    static bool AlongChannels(long[] dims, long[] shape)
    {
        int offset = shape.Length - dims.Length;
        if (offset < 0 || offset > 1) return false;
        for (int d = 0; d < dims.Length; d++)
            if (d + offset != 1 && dims[d] != 1) return false;
        return true;
    }

    /// <summary>Per channel of a tensor of <paramref name="shape"/>, what rounding c and the weights once to the type
    /// can move it by, against <paramref name="magnitudes"/> of the input channels: u·(|c| + <see cref="LinearInput"/>'s
    /// bound). With the input's channel means, the channel's mean (<see cref="ChannelDriftDetector"/>); with its largest
    /// |x|, any element: yⱼ's error Σₖ εₖ·xₖⱼ has, per group of equal weights, |Σ xₖⱼ| ≤ Σ max|xₖ|, so the same worst
    /// case and variance bound hold for every element (the local replay's elementwise test). float16/bfloat16 weights
    /// whose input is known only (null otherwise: for float and double ORT's arithmetic allowance stands in).</summary>
    public double[]? Rounding(long[] shape, int channels, int elementType, double[]? magnitudes)
    {
        double u = ChannelDriftDetector.UnitRoundoff(elementType);
        if (u <= ChannelDriftDetector.Arithmetic(1) || Input is { Op: "Mul" } && !AlongChannels(Input.Dims, shape)
            || Input?.PerChannel(magnitudes, channels, ChannelDriftDetector.Z) is not { } weighed) return null;
        var shifts = PerChannel(shape, channels);
        return weighed.Select((w, c) => u * ((shifts?[c] ?? 0) + w)).ToArray();
    }
}

/// <summary>Per channel of a reference tensor, over every run: its mean, its standard deviation and its largest |x|.</summary>
internal sealed record InputMoments(double[] Mean, double[] Spread, double[] Magnitude);

/// <summary>
/// The weights a rewritten linear node (Conv, ConvTranspose, Gemm, MatMul) stores, against the reference tensor
/// <paramref name="Name"/> they multiply. Rounded once to the type, W' = W'* + ε with |ε| ≤ u·|W'|, they move output
/// channel m's mean by Σₖ εₘₖ·x̄ₖ (x̄ₖ the mean of the input channel tap k reads): at most u·Σₖ |W'ₘₖ|·|x̄ₖ|, an offset
/// the output's own values do not bound when the sum cancels (float16: a Conv after a BN of large shift, inputs ~100,
/// Σ|W'| = 88, outputs ~18 — half-numerics:m31000012). Exactly: |ε| ≤ ulp(W')/2 = u·h with h = 2^⌊log₂|W'|⌋. Weights of
/// one exact value round alike, so the taps are grouped by |W'| (equal exact values have equal rounded ones):
/// c_v = h_v·Σ_{|W'ₖ| = v} |x̄ₖ|, worst case u·Σ c_v. Distinct exact values round independently, each error uniform on
/// ±u·h_v (the probabilistic model of rounding, Higham and Mary 2019): the sum is normal of variance u²·Σ c_v²/3, and
/// the bound is the smaller of the worst case and λ = Z (the drift test's own level) of its standard deviations.
/// The same errors against the input's variation tilt the channel: the fit's gain collects
/// Σₖ εₖ·cov(xₖ, r)/S², and |cov(xₖ, r)| ≤ sdₖ·S, so the gain moves by at most the same bound with sdₖ for |x̄ₖ|, over S —
/// large where the weighted sum cancels a variation the inputs share (one input channel through 1×1 convs:
/// half-numerics:m10000915, gain 0.45). Op "Mul": the s of Add(Mul(x, s), t) (a standalone BN's Mul + Add), one
/// weight per channel.
/// </summary>
/// <param name="Axis">The channel axis of the input (1; 0 for Gemm's transposed A).</param>
/// <param name="Weights">Reads the stored weights (times |α| for Gemm), laid out as the op defines them.</param>
internal sealed record LinearInput(string Name, int Axis, string Op, long[] Dims, int Groups, bool TransB, Func<double[]> Weights)
{
    /// <summary>Output channels (M) and input channels (K) of the node.</summary>
    (long M, long K) Channels => Op switch
    {
        "Conv" => (Dims[0], Dims[1] * Groups),
        "ConvTranspose" => (Dims[1] * Groups, Dims[0]),
        _ => TransB ? (Dims[0], Dims[1]) : (Dims[1], Dims[0]),
    };

    /// <summary>The bound over u per output channel of Σₖ εₖ·vₖ/u, from a magnitude per input channel (|x̄ₖ| or sdₖ);
    /// null when they do not fit.</summary>
    public double[]? PerChannel(double[]? means, int channels, double lambda)
    {
        if (Op == "Mul") return Diagonal(means, channels);
        var (outputs, inputs) = Channels;
        if (means is null || channels != outputs || means.Length != inputs) return null;
        var w = Weights();
        long taps = w.Length / (Dims[0] * Dims[1]);
        var groups = new Dictionary<double, double>[channels];
        for (int m = 0; m < channels; m++) groups[m] = [];
        for (long i = 0; i < w.Length; i++)
        {
            long row = i / taps / Dims[1], col = i / taps % Dims[1];
            var (m, k) = Op switch
            {
                "Conv" => (row, row / (Dims[0] / Groups) * Dims[1] + col),          // W [M, C/g, k…]
                "ConvTranspose" => (row / (Dims[0] / Groups) * Dims[1] + col, row), // W [C, M/g, k…]
                _ => TransB ? (row, col) : (col, row),                             // B [K, N] or [N, K]
            };
            double v = Math.Abs(w[i]);
            if (v > 0 && double.IsFinite(v)) groups[m][v] = groups[m].GetValueOrDefault(v) + Math.ScaleB(1, Math.ILogB(v)) * Math.Abs(means[k]);
        }
        var bound = new double[channels];
        for (int m = 0; m < channels; m++)
        {
            double sum = 0, squares = 0;
            foreach (var c in groups[m].Values) { sum += c; squares += c * c; }
            bound[m] = Math.Min(sum, lambda * Math.Sqrt(squares / 3));
        }
        return bound;
    }

    /// <summary>A Mul by a constant s along the channels (a standalone BN's Mul + Add): yₘ = sₘ·xₘ, one weight per
    /// channel, so the bound is its worst case h(sₘ)·vₘ (s a scalar: the same for every channel).</summary>
    double[]? Diagonal(double[]? means, int channels)
    {
        var w = Weights();
        if (means is null || means.Length != channels || w.Length != channels && w.Length != 1) return null;
        return means.Select((v, m) => Math.Abs(w[w.Length == 1 ? 0 : m]) is var s && s > 0 && double.IsFinite(s) ? Math.ScaleB(1, Math.ILogB(s)) * Math.Abs(v) : 0).ToArray();
    }

    /// <summary>The weights of a Conv/ConvTranspose ([M, C/g, k…] / [C, M/g, k…]), Gemm or rank-2 MatMul node
    /// (weight dims <paramref name="dims"/>); null for other layouts.</summary>
    public static LinearInput? Of(NodeProto n, long[] dims, Func<double[]> weights)
    {
        long Attr(string name, long fallback) => n.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : fallback;
        if (dims.Length < 2 || dims.Any(d => d <= 0)) return null;
        long groups = Attr("group", 1);
        switch (n.OpType)
        {
            case "Conv" or "ConvTranspose" when groups > 0 && dims[0] % groups == 0:
                return new LinearInput(n.Input[0], 1, n.OpType, dims, (int)groups, false, weights);
            case "Gemm" or "MatMul" when dims.Length == 2:
                double alpha = n.OpType == "Gemm" && n.Attribute.FirstOrDefault(a => a.Name == "alpha") is { } al ? Math.Abs(al.F) : 1;
                return new LinearInput(n.Input[0], n.OpType == "Gemm" && Attr("transA", 0) != 0 ? 0 : 1, n.OpType, dims, 1,
                    n.OpType == "Gemm" && Attr("transB", 0) != 0, () => weights().Select(x => alpha * x).ToArray());
            default: return null;
        }
    }
}

/// <summary>
/// Local replay: each rewrite judged on the reference's own values. The rewritten nodes of the candidate (those whose
/// outputs are neither <see cref="Unchanged"/> Same nor Carried: every other node computes the same function of the
/// same names in both models) are copied into the reference, renamed, and read the REFERENCE's tensors wherever the
/// reference makes the name they read (graph inputs and node outputs; the candidate's constants are copied, tensors
/// only the candidate makes stay inside the copy). Each copied node's output that the reference also makes is then
/// compared with the reference's: the difference is the rewrite's own error, not what the network downstream of other
/// rewrites amplifies. If every replayed tensor agrees, every candidate tensor is the reference's up to errors of that
/// size carried through nodes both models define alike.
///   before: reference X → BN → Y;  candidate X → Conv' → Y
///   spliced: reference X → Conv → BN → Y, and X → Conv'(copy) → Y__replay; compare Y__replay with Y.
/// Not planned (null, with the reason) when the rewritten nodes need what a spliced copy cannot give them: other
/// opset versions, subgraphs (they read outer names), sequences.
/// float16/bfloat16: ORT's CPU computes their ops in float32 and passes float32 from node to node within a session
/// (<see cref="SegmentedModel.CanSegment"/>), its BatchNormalization included (measured: the original's half BN is
/// the exact BN of its input to 0.3 u, no trace of factors rounded in half); the copies read those same values, so a
/// replay sees the rewrite's own roundings (its half weights and constants) and the exposed tensors' rounding.
/// </summary>
internal static class LocalReplay
{
    public const string Suffix = "__replay";

    public static ReplayPlan? Plan(OnnxModel reference, OnnxModel candidate, HashSet<string> same, HashSet<string> carried, out string? whyNot)
    {
        reference.MaterializeDeferred(_ => false);
        candidate.MaterializeDeferred(_ => false);
        var rg = reference.Proto.Graph;
        var cg = candidate.Proto.Graph;
        whyNot = null;
        var unchanged = new HashSet<string>(same, StringComparer.Ordinal);
        unchanged.UnionWith(carried);
        var region = cg.Node.Where(n => n.Output.Any(o => o.Length > 0 && !unchanged.Contains(o))).ToList();
        if (region.Count == 0) return null;
        var opsets = Opsets(reference.Proto);
        var theirs = Opsets(candidate.Proto);
        foreach (var n in region)
        {
            string domain = n.Domain == "ai.onnx" ? "" : n.Domain;
            if (!opsets.TryGetValue(domain, out long v) || !theirs.TryGetValue(domain, out long w) || v != w)
                whyNot = $"node '{n.Name}' ({n.OpType}) is in opset {(theirs.TryGetValue(domain, out w) ? w : 0)} of domain '{domain}', the original imports {(opsets.TryGetValue(domain, out v) ? v : 0)}";
            else if (n.Attribute.Any(a => a.G != null || a.Graphs.Count > 0))
                whyNot = $"node '{n.Name}' ({n.OpType}) holds a subgraph";
            else if (n.OpType.Contains("Sequence") || n.OpType.StartsWith("Optional"))
                whyNot = $"node '{n.Name}' ({n.OpType}) makes or reads a sequence or optional";
            else if (candidate.Proto.Functions.Any(f => f.Domain == n.Domain && f.Name == n.OpType))
                whyNot = $"node '{n.Name}' calls the model's local function {n.OpType}";
            if (whyNot != null) return null;
        }

        var referenceMakes = rg.Node.SelectMany(n => n.Output).Where(o => o.Length > 0).ToHashSet(StringComparer.Ordinal);
        var referenceInputs = rg.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var taken = new HashSet<string>(referenceMakes, StringComparer.Ordinal);
        taken.UnionWith(referenceInputs);
        taken.UnionWith(rg.Initializer.Select(t => t.Name));
        taken.UnionWith(rg.Node.Select(n => n.Name));
        string Fresh(string name)
        {
            string fresh = name + Suffix;
            for (int k = 2; !taken.Add(fresh); k++) fresh = $"{name}{Suffix}{k}";
            return fresh;
        }

        var proto = reference.Proto.Clone();
        proto.IrVersion = Math.Max(proto.IrVersion, 4); // the copied constants are initializers that are not inputs
        var graph = proto.Graph;
        var initializers = cg.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var renamed = new Dictionary<string, string>(StringComparer.Ordinal);   // candidate name → name in the copy
        var replayed = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in region) // the candidate's order is topological
        {
            var copy = node.Clone();
            if (copy.Name.Length > 0) copy.Name = Fresh(copy.Name);
            for (int i = 0; i < copy.Input.Count; i++)
            {
                string x = copy.Input[i];
                if (x.Length == 0) continue;
                if (referenceInputs.Contains(x) || referenceMakes.Contains(x) && !initializers.ContainsKey(x)) continue; // the reference's value
                if (renamed.TryGetValue(x, out var inner)) { copy.Input[i] = inner; continue; }
                if (!initializers.TryGetValue(x, out var t))
                {
                    whyNot = $"node '{node.Name}' reads '{x}', which the original does not make";
                    return null;
                }
                var constant = t.Clone();
                if (OnnxModel.IsExternal(t))
                {
                    constant.ExternalData.Clear();
                    constant.DataLocation = TensorProto.Types.DataLocation.Default;
                    constant.RawData = ByteString.CopyFrom(candidate.RawBytes(t));
                }
                constant.Name = renamed[x] = Fresh(x);
                graph.Initializer.Add(constant);
                copy.Input[i] = constant.Name;
            }
            for (int k = 0; k < copy.Output.Count; k++)
            {
                string y = copy.Output[k];
                if (y.Length == 0) continue;
                copy.Output[k] = renamed[y] = Fresh(y);
                if (referenceMakes.Contains(y)) replayed[y] = copy.Output[k];
            }
            graph.Node.Add(copy);
        }
        var model = new OnnxModel(proto, reference.SourcePath) { DisplayName = reference.DisplayName };
        bool FromReference(string x) => referenceInputs.Contains(x) || referenceMakes.Contains(x) && !initializers.ContainsKey(x);
        return new ReplayPlan(model, replayed, region.Count, Shifts(region, initializers, candidate, replayed, FromReference));
    }

    /// <summary>The additive constant of each node making a replayed tensor: input 2 of Conv, ConvTranspose, Gemm; the
    /// constant operand of Add and Sub; and the weights of Conv, ConvTranspose, Gemm and MatMul with the reference
    /// tensor they multiply (<see cref="LinearInput"/>).</summary>
    static Dictionary<string, ReplayShift> Shifts(List<NodeProto> region, Dictionary<string, TensorProto> initializers,
        OnnxModel candidate, Dictionary<string, string> replayed, Func<string, bool> fromReference)
    {
        var shifts = new Dictionary<string, ReplayShift>(StringComparer.Ordinal);
        bool Constant(string name, out TensorProto t) =>
            initializers.TryGetValue(name, out t!) && Tensors.ElementType.IsFoldable(t.DataType);
        var makers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in region)
            foreach (var o in n.Output)
                if (o.Length > 0) makers.TryAdd(o, n);
        foreach (var n in region)
        {
            if (n.Output.Count == 0 || !replayed.ContainsKey(n.Output[0])) continue;
            string? c = n.OpType switch
            {
                "Conv" or "ConvTranspose" or "Gemm" when n.Input.Count > 2 => n.Input[2],
                "Add" or "Sub" when n.Input.Count == 2 => initializers.ContainsKey(n.Input[1]) ? n.Input[1] : n.Input[0],
                _ => null,
            };
            var shift = new ReplayShift([], []);
            if (c is not null && Constant(c, out var t))
            {
                var values = candidate.ReadDoubles(t);
                if (n.OpType == "Gemm" && n.Attribute.FirstOrDefault(a => a.Name == "beta") is { } beta)
                    for (int i = 0; i < values.Length; i++) values[i] *= beta.F;
                shift = new ReplayShift(n.OpType is "Conv" or "ConvTranspose" ? null : [.. t.Dims], values);
            }
            // float16/bfloat16 only: for float and double the arithmetic allowance a·M (256 float ulps) stands in.
            if (n.OpType is "Conv" or "ConvTranspose" or "Gemm" or "MatMul" && n.Input.Count > 1 && fromReference(n.Input[0])
                && Constant(n.Input[1], out var w) && (TensorProto.Types.DataType)w.DataType is TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16)
                shift = shift with { Input = LinearInput.Of(n, [.. w.Dims], () => candidate.ReadDoubles(w)) };
            // Add(Mul(x, s), t) (a standalone BN's Mul + Add), x the reference's: s rounded once against x as well.
            else if (n.OpType is "Add" or "Sub" && c is not null && n.Input.FirstOrDefault(i => i != c) is { } z && makers.TryGetValue(z, out var mul)
                && mul.OpType == "Mul" && mul.Input.Count == 2 && (Constant(mul.Input[1], out var s) ? 1 : Constant(mul.Input[0], out s) ? 0 : -1) is var k and >= 0
                && fromReference(mul.Input[1 - k]) && (TensorProto.Types.DataType)s.DataType is TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16)
                shift = shift with { Input = new LinearInput(mul.Input[1 - k], 1, "Mul", [.. s.Dims], 1, false, () => candidate.ReadDoubles(s)) };
            if (shift.Values.Length > 0 || shift.Input != null) shifts[n.Output[0]] = shift;
        }
        return shifts;
    }

    static Dictionary<string, long> Opsets(ModelProto m) =>
        m.OpsetImport.GroupBy(o => o.Domain == "ai.onnx" ? "" : o.Domain).ToDictionary(g => g.Key, g => g.Max(o => o.Version));
}
