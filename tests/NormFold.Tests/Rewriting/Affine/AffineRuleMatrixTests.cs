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
    public static TheoryData<string> Rules => new()
    {
        "AffineIntoConv", "AffineIntoConvTranspose", "AffineIntoGemm", "AffineIntoMatMul",
        "AffineForwardIntoConv", "AffineForwardIntoGemm", "AffineForwardIntoMatMul", "AffineMerge",
    };

    /// <summary>A graph that <paramref name="rule"/> rewrites, in <paramref name="type"/>, ending at "y".</summary>
    static OnnxModel Graph(string rule, int type)
    {
        var g = new GraphBuilder(15);
        bool conv = rule.Contains("Conv"), gemm = rule.Contains("Gemm");
        string input = g.Input("x", type, conv ? [2, 4, 5, 5] : gemm ? [3, 4] : [2, 3, 4]);
        long[] along(long c) => conv ? [c, 1, 1] : [c];
        void Linear(string x, string y)
        {
            string op = rule.Replace("AffineForwardInto", "").Replace("AffineInto", "");
            string w = g.Init("w", type, op switch { "Conv" => [6, 4, 3, 3], "ConvTranspose" => [4, 6, 3, 3], _ => [4, 6] });
            string[] inputs = op is "MatMul" ? [x, w] : [x, w, g.Init("b", type, [6])];
            g.Node(op, inputs, y, op.ToLowerInvariant());
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
