using NormFold.Graph;
using NormFold.Onnx.Proto;
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
    public sealed record GemmPlan(NodeProto Anchor, NodeProto Target, TensorProto B, ChannelLayout Layout, double[] Scale,
        double[] Shift, double Beta, int CType, double[] NewC, long[] CDims) : Plan(Anchor, Target);

    public override string Name => "BatchNormIntoGemm";
    protected override IReadOnlyCollection<string> ProducerOpTypes { get; } = ["Gemm"];

    protected override Match MatchProducer(GraphIndex g, NodeProto bn, NodeProto gemm, BatchNormParameters p)
    {
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
        if (!ChannelBias.TryFold(c, c is null ? null : g.Model.ReadDoubles(c), beta, p.Scale, p.Shift, out var newC, out var cDims, out string whyNot))
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(gemm)}: {whyNot}");

        ChannelLayout layout = transB ? new ChannelLayout.Rows() : new ChannelLayout.Columns();
        if (NonFinite(g, gemm, b, layout, p.Scale, c?.DataType ?? b.DataType, newC) is { } overflow) return overflow;
        return new Match.Planned(new GemmPlan(bn, gemm, b, layout, p.Scale, p.Shift, beta, c?.DataType ?? b.DataType, newC, cDims));
    }

    protected override Applied Apply(GraphEditor editor, GemmPlan plan)
    {
        var gemm = plan.Target!;
        var b = ScaleWeight(editor, plan.B, plan.Layout, plan.Scale);
        string? oldC = HasInput(gemm, 2) ? gemm.Input[2] : null;
        var c = AddBias(editor, oldC, (oldC ?? plan.B.Name + "_bias") + "_bnfold", plan.CType, plan.CDims, plan.NewC, plan.Beta, plan.Scale, plan.Shift);
        editor.SetInput(gemm, 1, b.Result);
        editor.SetInput(gemm, 2, c.Result);
        if (Attributes.Find(gemm, "beta") != null) Attributes.SetFloat(gemm, "beta", 1f);
        Bypass(editor, plan.Anchor, gemm);
        return new Applied([b.Result, c.Result], [b, c]);
    }
}
