using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// A → (BN | Mul/Div/Add/Sub by constants along A's last axis)… → MatMul(·, B)   ⇒   MatMul(A, B') [→ Add(b')]
/// The channel axis is A's LAST axis (the reduction axis K), for any rank of A; a BN (axis 1) needs A of rank 2.
/// Conditions: B constant, floating point, 2-D [K, N]; A's rank proven (never from a value_info) unless the constants
/// are scalars and no BN is among them; a shift needs a new Add, so a lone shift is left.
/// Algebra: B'[k, n] = s[k]·B[k, n];  b'[n] = Σ_k t[k]·B[k, n].
/// </summary>
internal sealed class AffineForwardIntoMatMul : AffineForward
{
    public override string Name => "AffineForwardIntoMatMul";
    protected override IReadOnlyCollection<string> ConsumerOpTypes { get; } = ["MatMul"];
    protected override bool NeedsNodeForBias => true;

    protected override Match.Refused? ReadConsumer(GraphIndex g, NodeProto matmul, string input, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Constant(g, matmul, 1, "B", out var b) is { } refused) return refused;
        if (b.Dims.Count != 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} B '{b.Name}' has shape {LinearWeights.Dims(b)}, expected 2-D");
        // Proven, never from a value_info (null: not proven; the channel axis is the last one whatever the rank).
        int? rank = g.ProvenShape(input)?.Length;
        if (rank < 1)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} reads a scalar");
        linear = new Linear(matmul, b, new ChannelLayout.Columns(), new ChannelLayout.Rows(), b.Dims[1], b.Dims[0], rank, -1, -1, null, 1.0, 1.0);
        return null;
    }
}
