using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// MatMul(A, B) → Mul/Div/Add/Sub by constants along the last axis   ⇒   MatMul(A, B') [→ Add(b')]
/// Y[…, n] = Σ_k A[…, k]·B[k, n]: the channel axis is Y's LAST axis, for any rank of A, so a constant that varies
/// along it alone (N values, or a scalar) folds into B's columns. A BN (axis 1) qualifies only when Y has rank 2.
/// Conditions: B constant, floating point, 2-D [K, N]; Y's rank proven (never from a value_info) unless the constants
/// have at most one axis and no BN is among them (then any rank gives the same fold). The bias needs a node: one Add carries the
/// composed shift (the chain's first Add is reused in effect; a lone bias Add is left as it is).
/// Algebra: B'[k, n] = B[k, n]·s[n];  b'[n] = t[n].
/// </summary>
internal sealed class AffineIntoMatMul : AffineIntoProducer
{
    public override string Name => "AffineIntoMatMul";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["MatMul"];

    protected override Match.Refused? ReadProducer(GraphIndex g, NodeProto matmul, string output, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Constant(g, matmul, 1, "B", out var b) is { } refused) return refused;
        if (b.Dims.Count != 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} B '{b.Name}' has shape {LinearWeights.Dims(b)}, expected 2-D");
        // With a 2-D B, Y has A's rank (A 1-D: Y is 1-D [N]); proven, never from a value_info (null: not proven).
        int? rank = g.ProvenShape(output)?.Length ?? g.ProvenShape(matmul.Input[0])?.Length;
        if (rank < 1)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(matmul)} reads a scalar");
        linear = new Linear(matmul, b, new ChannelLayout.Columns(), b.Dims[1], rank, -1, -1, null, 1.0);
        return null;
    }
}
