using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Rewriting;

public class PipelineTests
{
    static GraphBuilder Chain()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [-1, 3, 6, 6]);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "b1");
        g.Bn("b1", 4, "b2"); // BN after BN: the second folds once the first is gone
        g.Node("Relu", ["b2"], "r", "relu");
        g.Bn("r", 4, "y");   // standalone
        g.Output("y");
        return g;
    }

    [Fact]
    public void Every_bn_gets_exactly_one_decision_and_chains_fold()
    {
        var original = Chain().Build();
        var (folded, r) = Fold(original);
        Assert.Equal(["bn_b1", "bn_b2", "bn_y"], r.Log.Decisions.Select(d => d.Anchor));
        Assert.Equal([Outcome.Folded, Outcome.Folded, Outcome.Replaced], r.Log.Decisions.Select(d => d.Outcome));
        AssertEquivalent(original, folded, shapes: new Dictionary<string, long[]> { ["x"] = [3, 3, 6, 6] });
    }

    [Fact]
    public void Every_registered_rule_can_be_disabled_and_unknown_names_are_refused()
    {
        Assert.Equal(RuleRegistry.RuleNames.Count, RuleRegistry.RuleNames.Distinct().Count());
        Assert.Contains("GroupNormSwap", Pipeline.RuleNames);
        Assert.Contains("LayerNormSwap", Pipeline.RuleNames);
        Assert.Contains("GroupNormLowering", Pipeline.RuleNames);
        foreach (var name in RuleRegistry.RuleNames)
            Fold(Chain().Build(), new PipelineOptions { DisabledRules = new HashSet<string> { name } });
        Assert.Throws<InvalidUsageException>(() => Fold(Chain().Build(), new PipelineOptions { DisabledRules = new HashSet<string> { "NoSuchRule" } }));
    }

    /// <summary>The README names every rule (its rules table is what --disable takes) and every reason a decision can give.</summary>
    [Fact]
    public void The_readme_names_every_rule_and_every_reason()
    {
        string readme = File.ReadAllText(Path.Combine(RepoRoot, "README.md"));
        Assert.All(RuleRegistry.RuleNames, name => Assert.Contains($"`{name}`", readme));
        Assert.All(Enum.GetNames<SkipReason>(), name => Assert.Contains($"`{name}`", readme));
    }

    /// <summary>Each BN rule switched off by its name: the BN it would rewrite stays a BN, left as RuleDisabled.</summary>
    [Theory]
    [InlineData("BatchNormIntoConvTranspose")]
    [InlineData("BatchNormIntoGemm")]
    [InlineData("BatchNormIntoMatMul")]
    [InlineData("BatchNormToMulAdd")]
    public void Each_bn_rule_can_be_disabled_by_name(string rule)
    {
        var g = new GraphBuilder();
        bool matrix = rule is "BatchNormIntoGemm" or "BatchNormIntoMatMul";
        g.Input("x", F32, matrix ? [3, 4] : [2, 4, 5, 5]);
        long channels = 6;
        switch (rule)
        {
            case "BatchNormIntoConvTranspose": g.Node("ConvTranspose", ["x", g.Init("w", F32, [4, 6, 3, 3])], "p", "convT"); break;
            case "BatchNormToMulAdd": g.Node("Relu", ["x"], "p", "relu"); channels = 4; break;
            default: g.Node(rule["BatchNormInto".Length..], ["x", g.Init("w", F32, [4, 6])], "p", "linear"); break;
        }
        g.Bn("p", channels, "y");
        g.Output("y", F32, null);
        var original = g.Build();
        var (folded, r) = Fold(original, new PipelineOptions { DisabledRules = new HashSet<string> { rule } });
        Assert.Contains(rule + " (disabled)", AssertLeft(r, SkipReason.RuleDisabled).Detail);
        Assert.Equal(1, Count(folded, "BatchNormalization"));
        AssertEquivalent(original, folded);
    }

    [Fact]
    public void A_bn_whose_fold_is_disabled_is_left_as_a_bn_not_replaced()
    {
        var (folded, r) = Fold(Chain().Build(), new PipelineOptions { DisabledRules = new HashSet<string> { "BatchNormIntoConv" } });
        Assert.Equal([SkipReason.RuleDisabled, SkipReason.ProducerNotFoldable, SkipReason.ProducerNotFoldable], r.Log.Decisions.Select(d => d.Reason));
        Assert.Equal([Outcome.Left, Outcome.Replaced, Outcome.Replaced], r.Log.Decisions.Select(d => d.Outcome));
        Assert.Equal(1, Count(folded, "BatchNormalization"));
    }

    /// <summary>Thousands of standalone BNs, side by side on one input or in a chain: each becomes Mul + Add. (This took
    /// minutes when each rewrite re-propagated ranks over the whole graph; its time is in BENCHMARKS.md, not here.)</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Thousands_of_standalone_bns_are_all_replaced(bool sideBySide)
    {
        const int n = 3000;
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 4]);
        var p = g.BnParams("shared", 4); // shared parameters: every BN is one more reader of γ, β, mean, var
        string prev = "x";
        for (int i = 0; i < n; i++)
        {
            g.Node("BatchNormalization", [sideBySide ? "x" : prev, .. p], $"y{i}", $"bn{i}");
            if (sideBySide) g.Output($"y{i}", F32, [1, 4]);
            prev = $"y{i}";
        }
        if (!sideBySide) g.Output(prev, F32, [1, 4]);
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(n, r.Log.Decisions.Count);
        Assert.All(r.Log.Decisions, d => Assert.Equal(Outcome.Replaced, d.Outcome));
        Assert.Equal(n, Count(folded, "Mul"));
        Assert.Equal(n, Count(folded, "Add"));
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        Assert.Equal(2 * n, AssertAuditPasses(original, folded, r).Tensors);
    }

    [Fact]
    public void Folding_is_idempotent()
    {
        var (once, _) = Fold(Chain().Build());
        var (twice, r2) = Fold(once);
        Assert.Empty(r2.Log.Decisions);
        Assert.Equal(once.Proto.ToByteArray(), twice.Proto.ToByteArray());
    }

    [Fact]
    public void Folding_is_deterministic()
    {
        var (a, _) = Fold(Chain().Build());
        var (b, _) = Fold(Chain().Build());
        Assert.Equal(a.Proto.ToByteArray(), b.Proto.ToByteArray());
    }

    [Fact]
    public void Value_info_of_removed_tensors_is_dropped_and_kept_for_the_rest()
    {
        var g = Chain();
        g.Graph.ValueInfo.Add(Value("c", F32, [-1, 4, 4, 4]));
        g.Graph.ValueInfo.Add(Value("b2", F32, [-1, 4, 4, 4]));
        var (folded, _) = Fold(g.Build());
        Assert.Equal(["b2"], folded.Proto.Graph.ValueInfo.Select(v => v.Name));
    }

    [Fact]
    public void Nodes_end_in_topological_order_with_unrelated_order_kept()
    {
        var (folded, _) = Fold(Chain().Build());
        Assert.Equal(["conv", "relu", "bn_y_mul", "bn_y_add"], folded.Proto.Graph.Node.Select(n => n.Name));
    }

    [Fact]
    public void Dead_code_the_model_already_had_is_left_alone()
    {
        var g = Chain();
        g.Node("Sigmoid", ["x"], "unused", "dead");
        var (folded, _) = Fold(g.Build());
        Assert.Contains(folded.Proto.Graph.Node, n => n.Name == "dead");
    }

    [Fact]
    public void Bodies_of_if_are_folded_reading_weights_of_the_enclosing_graph()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Input("cond", 9, []);
        g.Init("w", F32, [4, 3, 3, 3]); // outer weight, captured by both branches
        GraphProto Branch(string tag)
        {
            var b = g.Body(tag);
            b.Node("Conv", ["x", "w"], tag + "_c", tag + "_conv");
            b.Bn(tag + "_c", 4, tag + "_y", name: tag + "_bn");
            b.Output(tag + "_y", F32, null);
            return b.Graph;
        }
        g.Node("If", ["cond"], "y", "if", ("then_branch", Branch("then")), ("else_branch", Branch("else")));
        g.Output("y");
        var original = g.Build();
        var (folded, r) = Fold(original);
        Assert.Equal(2, r.Log.Count(Outcome.Folded));
        Assert.All(r.Log.Decisions, d => Assert.StartsWith("main/if:", d.Graph));
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        // The outer weight is still read by nobody now; the folded copies live in the bodies.
        Assert.DoesNotContain(folded.Proto.Graph.Initializer, t => t.Name == "w");
        AssertEquivalent(original, folded, iterations: 6);
    }

    [Fact]
    public void An_outer_tensor_read_by_a_body_counts_as_another_consumer()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [1, 3, 5, 5]);
        g.Input("cond", 9, []);
        g.Init("w", F32, [4, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 4, "y");
        var then = g.Body("then");
        then.Node("Identity", ["c"], "t", "id"); // the body reads the conv output
        then.Output("t", F32, null);
        var els = g.Body("else");
        els.Node("Identity", ["y"], "e", "id2");
        els.Output("e", F32, null);
        g.Node("If", ["cond"], "out", "if", ("then_branch", then.Graph), ("else_branch", els.Graph));
        g.Output("out");
        var (_, r) = Fold(g.Build(), new PipelineOptions { KeepStandaloneBatchNorm = true });
        var d = AssertLeft(r, SkipReason.ProducerHasOtherConsumers);
        Assert.Contains("If 'if'", d.Detail);
    }
}
