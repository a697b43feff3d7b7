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
    /// <summary>|c| per channel of a tensor of <paramref name="shape"/> (axis 1); null when c does not broadcast along
    /// that axis alone (nor is a scalar).</summary>
    public double[]? PerChannel(long[] shape, int channels)
    {
        if (Values.Length == 1) return Enumerable.Repeat(Math.Abs(Values[0]), channels).ToArray();
        if (Dims is null) return Values.Length == channels ? Values.Select(Math.Abs).ToArray() : null;
        int offset = shape.Length - Dims.Length;
        if (offset < 0 || offset > 1 || Values.Length != channels) return null;
        for (int d = 0; d < Dims.Length; d++)
            if (d + offset != 1 && Dims[d] != 1) return null;
        return Values.Select(Math.Abs).ToArray();
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
        return new ReplayPlan(model, replayed, region.Count, Shifts(region, initializers, candidate, replayed));
    }

    /// <summary>The additive constant of each node making a replayed tensor: input 2 of Conv, ConvTranspose, Gemm; the
    /// constant operand of Add and Sub.</summary>
    static Dictionary<string, ReplayShift> Shifts(List<NodeProto> region, Dictionary<string, TensorProto> initializers,
        OnnxModel candidate, Dictionary<string, string> replayed)
    {
        var shifts = new Dictionary<string, ReplayShift>(StringComparer.Ordinal);
        foreach (var n in region)
        {
            if (n.Output.Count == 0 || !replayed.ContainsKey(n.Output[0])) continue;
            string? c = n.OpType switch
            {
                "Conv" or "ConvTranspose" or "Gemm" when n.Input.Count > 2 => n.Input[2],
                "Add" or "Sub" when n.Input.Count == 2 => initializers.ContainsKey(n.Input[1]) ? n.Input[1] : n.Input[0],
                _ => null,
            };
            if (c is null || !initializers.TryGetValue(c, out var t) || !Tensors.ElementType.IsFoldable(t.DataType)) continue;
            var values = candidate.ReadDoubles(t);
            if (n.OpType == "Gemm" && n.Attribute.FirstOrDefault(a => a.Name == "beta") is { } beta)
                for (int i = 0; i < values.Length; i++) values[i] *= beta.F;
            shifts[n.Output[0]] = new ReplayShift(n.OpType is "Conv" or "ConvTranspose" ? null : [.. t.Dims], values);
        }
        return shifts;
    }

    static Dictionary<string, long> Opsets(ModelProto m) =>
        m.OpsetImport.GroupBy(o => o.Domain == "ai.onnx" ? "" : o.Domain).ToDictionary(g => g.Key, g => g.Max(o => o.Version));
}
