using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Gemm(A, B, C?; α, β, transA, transB) → Mul/Div/Add/Sub by per-column constants (or BN → those)
///   ⇒   Gemm(A, B', C'; α, β = 1, transA, transB)
/// Y = α·op(A)·op(B) + β·C is [M, N]; the channel axis is 1 (N).
/// Conditions: Gemm-7 or later; B (and C) constant, floating point, B 2-D; C absent, scalar, [N], [1,N], [M,1] or [M,N].
/// Algebra: column n of op(B) scaled by s[n] (row n of B when transB = 1); C'[…, n] = s[n]·β·C[…, n] + t[n];
/// β written as 1; α unchanged.
/// </summary>
internal sealed class AffineIntoGemm : AffineIntoProducer
{
    public override string Name => "AffineIntoGemm";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Gemm"];

    protected override Match.Refused? ReadProducer(GraphIndex g, NodeProto gemm, string output, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Gemm(g, gemm, out var b, out var c) is { } refused) return refused;
        bool transB = Attributes.Int(gemm, "transB", 0) != 0;
        ChannelLayout layout = transB ? new ChannelLayout.Rows() : new ChannelLayout.Columns();
        linear = new Linear(gemm, b, layout, transB ? b.Dims[0] : b.Dims[1], 2, 1, 2, c, Attributes.Float(gemm, "beta", 1f));
        return null;
    }
}
