using NormFold.Onnx;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Rewriting.Affine.AffineTestGraphs;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting.Affine;

/// <summary>
/// Every affine rule on one small graph of its own, in each floating-point type: float16 folds equivalent in ORT;
/// bfloat16 (which ORT's CPU provider does not run for these ops) folds to the double fold of the same values rounded
/// once to bfloat16; and the rule's name switches it off.
/// </summary>
public class AffineRuleMatrixTests
{
    static readonly string[] RuleNames =
    [
        "AffineIntoConv", "AffineIntoConvTranspose", "AffineIntoGemm", "AffineIntoMatMul",
        "AffineForwardIntoConv", "AffineForwardIntoGemm", "AffineForwardIntoMatMul", "AffineMerge",
    ];

    public static TheoryData<string> Rules => new(RuleNames);

    public static TheoryData<string> LinearRules => new(RuleNames.Where(r => r != "AffineMerge"));

    /// <summary>A graph that <paramref name="rule"/> rewrites, in <paramref name="type"/>, ending at "y"; with
    /// <paramref name="shared"/>, a second linear op reads the same weight (and bias) from input x2 into output y2.</summary>
    static OnnxModel Graph(string rule, int type, bool shared = false)
    {
        var g = new GraphBuilder(15);
        bool conv = rule.Contains("Conv"), gemm = rule.Contains("Gemm");
        long[] dims = conv ? [2, 4, 5, 5] : gemm ? [3, 4] : [2, 3, 4];
        string input = g.Input("x", type, dims);
        long[] along(long c) => conv ? [c, 1, 1] : [c];
        string op = rule.Replace("AffineForwardInto", "").Replace("AffineInto", "");
        string[]? parameters = null;
        void Linear(string x, string y)
        {
            parameters ??= op is "MatMul" ? [g.Init("w", type, [4, 6])]
                : [g.Init("w", type, op switch { "Conv" => [6, 4, 3, 3], "ConvTranspose" => [4, 6, 3, 3], _ => [4, 6] }), g.Init("b", type, [6])];
            g.Node(op, [x, .. parameters], y, y == "y2" ? "other" : op.ToLowerInvariant());
        }
        switch (rule)
        {
            case "AffineMerge":
                g.Node("Relu", [input], "r", "relu");
                Op(g, "Mul", "r", along(4), "m", type: type);
                Op(g, "Add", "m", along(4), "a", -1, 1, type);
                Op(g, "Div", "a", along(4), "y", type: type);
                break;
            case var _ when rule.StartsWith("AffineForward"):
                Op(g, "Mul", input, along(4), "m", type: type);
                Op(g, "Sub", "m", along(4), "s", -1, 1, type);
                Linear("s", "y");
                break;
            default:
                Linear(input, "p");
                Op(g, "Mul", "p", along(6), "m", type: type);
                Op(g, "Add", "m", along(6), "y", -1, 1, type);
                break;
        }
        g.Output("y", type, null);
        if (shared)
        {
            Linear(g.Input("x2", type, dims), "y2");
            g.Output("y2", type, null);
        }
        return g.Build();
    }

    [Theory]
    [MemberData(nameof(Rules))]
    public void Float16_folds_equivalent_in_ort(string rule)
    {
        var (folded, r) = FoldChecked(Graph(rule, F16));
        Assert.Equal(rule, Single(r).Rule);
        Assert.True(AffineOps(folded) < AffineOps(Graph(rule, F16)));
    }

    /// <summary>Every tensor the bfloat16 fold made is the double fold's (same values, exact in double) rounded once.</summary>
    [Theory]
    [MemberData(nameof(Rules))]
    public void Bfloat16_folds_to_the_double_fold_rounded_once(string rule)
    {
        var original = Graph(rule, BF16);
        var (folded, r) = Fold(original);
        Assert.Equal(rule, Single(r).Rule);
        AssertAuditPasses(original, folded, r);
        var (exact, r64) = Fold(AsDouble(original));
        Assert.Equal(r.Log.Decisions.Single().Created, r64.Log.Decisions.Single().Created);
        foreach (string name in r.Log.Decisions.Single().Created)
        {
            double[] got = Read(folded, name), want = Read(exact, name);
            Assert.Equal(want.Select(v => Rounding.ToBFloat16Bits(v)), got.Select(v => Rounding.ToBFloat16Bits(v)));
        }
    }

    [Theory]
    [MemberData(nameof(Rules))]
    public void The_rule_can_be_disabled_by_name(string rule)
    {
        var original = Graph(rule, F32);
        var (folded, r) = Fold(original, new PipelineOptions { DisabledRules = new HashSet<string> { rule } });
        Assert.Contains(rule + " (disabled)", AssertLeft(r, SkipReason.RuleDisabled).Detail);
        Assert.Equal(AffineOps(original), AffineOps(folded));
    }

    /// <summary>A weight and bias another node also reads stay as they are: the fold writes new tensors.</summary>
    [Theory]
    [MemberData(nameof(LinearRules))]
    public void A_weight_shared_with_another_node_is_not_changed_in_place(string rule)
    {
        var original = Graph(rule, F32, shared: true);
        var (folded, r) = FoldChecked(original);
        Assert.Equal(rule, Single(r).Rule);
        var other = folded.Proto.Graph.Node.Single(n => n.Name == "other");
        Assert.Equal(original.Proto.Graph.Node.Single(n => n.Name == "other").Input, other.Input);
        foreach (string name in other.Input.Skip(1)) Assert.Equal(Read(original, name), Read(folded, name));
        Assert.DoesNotContain(folded.Proto.Graph.Node, n => n != other && n.Input.Skip(1).Contains("w"));
    }

    /// <summary>The same model with every bfloat16 tensor, input and output as double (bfloat16 values are exact in double).</summary>
    static OnnxModel AsDouble(OnnxModel m)
    {
        var p = m.Proto.Clone();
        for (int i = 0; i < p.Graph.Initializer.Count; i++)
            if (p.Graph.Initializer[i] is { DataType: BF16 } t)
                p.Graph.Initializer[i] = TensorData.Create(t.Name, F64, t.Dims, m.ReadDoubles(m.Proto.Graph.Initializer[i]));
        foreach (var v in p.Graph.Input.Concat(p.Graph.Output))
            if (v.Type.TensorType.ElemType == BF16) v.Type.TensorType.ElemType = F64;
        return new OnnxModel(p);
    }

    static double[] Read(OnnxModel m, string name) => m.ReadDoubles(m.Proto.Graph.Initializer.Single(t => t.Name == name));
}
