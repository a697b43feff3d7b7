using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// A → (BN | Mul/Div/Add/Sub by per-column constants)… → Gemm(·, B, C?; α, β, transA, transB)   ⇒   Gemm(A, B', C'; β = 1)
/// The channel axis of A is the reduction axis K: axis 1, or axis 0 when transA = 1 (a BN needs axis 1).
/// Conditions: Gemm-7 or later; B (and C) constant, floating point, B 2-D; C absent, scalar, [1], [N], [1,N], [M,1] or
/// [M,N] (every shape Gemm broadcasts); any α, β (0 too), transA, transB: always exact.
/// Algebra: row k of op(B) scaled by s[k]; C'[…, n] = β·C[…, n] + α·Σ_k t[k]·op(B)[k, n] (C absent: 0; C' is [N], or
/// [M,N] when C has M rows); β written as 1.
/// </summary>
internal sealed class AffineForwardIntoGemm : AffineForward
{
    public override string Name => "AffineForwardIntoGemm";
    protected override IReadOnlyCollection<string> ConsumerOpTypes { get; } = ["Gemm"];

    protected override Match.Refused? ReadConsumer(GraphIndex g, NodeProto gemm, string input, out Linear linear)
    {
        linear = null!;
        if (LinearWeights.Gemm(g, gemm, out var b, out var c) is { } refused) return refused;
        bool transA = Attributes.Int(gemm, "transA", 0) != 0, transB = Attributes.Int(gemm, "transB", 0) != 0;
        long k = transB ? b.Dims[1] : b.Dims[0], n = transB ? b.Dims[0] : b.Dims[1];
        ChannelLayout inputs = transB ? new ChannelLayout.Columns() : new ChannelLayout.Rows();
        ChannelLayout outputs = transB ? new ChannelLayout.Rows() : new ChannelLayout.Columns();
        linear = new Linear(gemm, b, outputs, inputs, n, k, 2, transA ? 0 : 1, 2, c,
            Attributes.Float(gemm, "beta", 1f), Attributes.Float(gemm, "alpha", 1f));
        return null;
    }
}
