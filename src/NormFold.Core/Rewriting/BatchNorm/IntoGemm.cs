using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Affine;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// Gemm(A, B, C?; α, β, transA, transB) → BN   ⇒   Gemm(A, B', C'; α, β = 1, transA, transB)
/// Y = α·op(A)·op(B) + β·C is [M, N]; BN's channel axis 1 is N.
/// Conditions: Gemm-7 or later (earlier versions carry a `broadcast` flag); B (and C) constant, floating point;
/// N = BN channels; C absent, scalar, [N], [1,N], [M,1] or [M,N].
/// Algebra: column n of op(B) scaled by s[n] (row n of B when transB = 1, column n otherwise);
///          C'[…, n] = s[n]·β·C[…, n] + t[n]; β written as 1. α is unchanged.
/// </summary>
internal sealed class IntoGemm : FoldIntoProducer<IntoGemm.GemmPlan>
{
    public sealed record GemmPlan(NodeProto Anchor, NodeProto Target, LinearState State, int CType, double[] NewC, long[] CDims)
        : Plan(Anchor, Target);

    public override string Name => "BatchNormIntoGemm";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Gemm"];

    protected override Match MatchProducer(RewriteContext context, NodeProto bn, NodeProto gemm, BatchNormParameters p)
    {
        var g = context.Graph;
        if (g.Opset < 7)
            return Match.Refuse(SkipReason.UnsupportedOpsetVersion, $"{Attributes.Describe(gemm)} is Gemm-{(g.Opset < 6 ? 1 : 6)}, whose `broadcast` attribute NormFold does not rewrite");
        if (ConstantWeight(g, gemm, 1, "B", out var b) is { } refused) return refused;
        bool transB = Attributes.Int(gemm, "transB", 0) != 0;
        if (b.Dims.Count != 2)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(gemm)} B '{b.Name}' has shape {Dims(b)}, expected 2-D");
        long n = transB ? b.Dims[0] : b.Dims[1];
        if (n != p.Channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(gemm)} produces {n} columns, the BN has {p.Channels} channels");
        TensorProto? c = null;
        if (HasInput(gemm, 2) && ConstantWeight(g, gemm, 2, "C", out c) is { } cRefused) return cRefused;

        double beta = Attributes.Float(gemm, "beta", 1f);
        ChannelLayout layout = transB ? new ChannelLayout.Rows() : new ChannelLayout.Columns();
        if (Compose(context, gemm, b, c, beta, layout, n, p, out var state, out var newC, out var cDims) is { } bad) return bad;
        return new Match.Planned(new GemmPlan(bn, gemm, state, c?.DataType ?? b.DataType, newC, cDims));
    }

    protected override Applied Apply(GraphEditor editor, GemmPlan plan)
    {
        var gemm = plan.Target!;
        var created = new List<string>();
        var records = new List<WeightRecord>();
        string c = Write(editor, gemm, plan.State, plan.NewC, plan.CDims, plan.CType, created, records, out var state);
        editor.SetInput(gemm, 2, c);
        if (Attributes.Find(gemm, "beta") != null) Attributes.SetFloat(gemm, "beta", 1f);
        Bypass(editor, plan.Anchor, gemm);
        return new Applied(created, records, state);
    }
}
