using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.BatchNorm;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Per-channel affine nodes in a row: X → n₁ → n₂ → … where each nᵢ is a Mul/Div/Add/Sub by a constant
/// (<see cref="AffineOp"/>) or, first only, an eval-mode BatchNormalization; each reads the previous output as its only reader,
/// and no intermediate is a graph output. Their maps compose in double into one y = a·x + b per channel.
/// </summary>
internal sealed record AffineChain(IReadOnlyList<NodeProto> Nodes, ChannelAffine Map)
{
    public string Output => Nodes[^1].Output[0];
    public int Count => Nodes.Count;

    /// <summary>
    /// The longest chain starting at the node that reads <paramref name="start"/> (which must be its only reader; the
    /// caller checks whether <paramref name="start"/> may be rewritten). X has <paramref name="rank"/> and channel axis
    /// <paramref name="axis"/>, with <paramref name="channels"/> channels (−1: not known). <paramref name="stop"/> is why
    /// the chain ends where it does: null when the next node is no affine op at all, or the chain reached a graph output.
    /// </summary>
    public static AffineChain Walk(GraphIndex g, string start, int rank, int axis, long channels, out Match.Refused? stop) =>
        Walk(g, start, rank, axis, channels, null, out stop);

    /// <summary>The same along a piece (see <see cref="AffineHead"/>): <paramref name="bn"/> may come anywhere in it,
    /// no other BN.</summary>
    public static AffineChain Walk(GraphIndex g, string start, int rank, int axis, long channels, NodeProto? bn, out Match.Refused? stop)
    {
        var nodes = new List<NodeProto>();
        var map = ChannelAffine.Identity;
        string x = start;
        stop = null;
        while (true)
        {
            if (nodes.Count > 0 && (g.IsGraphOutput(x) || g.Consumers(x).Count != 1)) break;
            var consumers = g.Consumers(x);
            if (consumers.Count != 1) break;
            var n = consumers[0];
            if (nodes.Count > 0 && n.OpType == "BatchNormalization" && !ReferenceEquals(n, bn)) break; // one BN per piece
            var step = Step(g, n, x, rank, axis, channels, out stop);
            if (step is null) break;
            if (step.Channels == 0) // an empty per-channel constant (zero channels): nothing to compose
            {
                stop = Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(n)} has zero channels");
                break;
            }
            var next = map.Then(step);
            // A factor the original cannot hold in its type overflows there for ordinary inputs (x / 1e-39 in float):
            // composed in double, the folded model would stay finite where the original gives ±Inf.
            int type = StepType(g, n);
            if (FoldedValues.FirstNotFinite(next.Scale, type) is not null || FoldedValues.FirstNotFinite(next.Shift, type) is not null)
            {
                stop = Match.Refuse(SkipReason.NonFiniteParameter, $"after {Attributes.Describe(n)} the running {next.FirstNotFiniteIn(type)} is not finite as {Tensors.ElementType.Name(type)}: the original overflows there");
                break;
            }
            nodes.Add(n);
            map = next;
            if (channels < 0 && map.Channels > 1) channels = map.Channels;
            x = n.Output[0];
        }
        return new AffineChain(nodes, map);
    }

    /// <summary>
    /// The node <paramref name="n"/> reading <paramref name="x"/> as a per-channel map, or null with the refusal
    /// (null refusal: not an affine node at all, or <paramref name="x"/> is not its data input).
    /// </summary>
    public static ChannelAffine? Step(GraphIndex g, NodeProto n, string x, int rank, int axis, long channels, out Match.Refused? refusal)
    {
        refusal = null;
        if (n.OpType == "BatchNormalization" && Attributes.IsDefaultDomain(n))
        {
            if (n.Input.Count == 0 || n.Input[0] != x) return null;
            if (BatchNormParameters.TryRead(g, n, out var p) is { } bnRefused) { refusal = bnRefused; return null; }
            if (axis != 1)
            {
                refusal = Match.Refuse(SkipReason.ChannelAxisMismatch, $"{Attributes.Describe(n)} normalises axis 1, the channel axis here is {axis} (rank {rank})");
                return null;
            }
            if (channels >= 0 && p.Channels != channels)
            {
                refusal = Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(n)} has {p.Channels} channels, the tensor has {channels}");
                return null;
            }
            return new ChannelAffine(p.Scale, p.Shift);
        }
        var op = AffineOp.TryRead(g, n, out refusal);
        if (op is null || op.Data != x) { if (op is not null) refusal = null; return null; }
        return op.PerChannel(g, rank, axis, channels, out var affine) is { } r ? Fail(r, out refusal) : affine;
    }

    /// <summary>The type a node computes in: its constant's (the data's, by ONNX's type rules); a BN's scale's.</summary>
    static int StepType(GraphIndex g, NodeProto n) =>
        AffineOp.TryRead(g, n, out _) is { } op ? op.C.DataType
        : g.TryGetConstant(n.Input[1], out var t) ? t.DataType : Tensors.ElementType.Double;

    static ChannelAffine? Fail(Match.Refused r, out Match.Refused? refusal) { refusal = r; return null; }
}
