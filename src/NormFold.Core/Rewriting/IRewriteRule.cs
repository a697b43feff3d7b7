using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting;

/// <summary>
/// One rewrite: a pure match step (a plan, a named refusal, or "not a candidate") and an apply step that never refuses.
/// A rule is registered in one phase of <see cref="RuleRegistry"/>; the pipeline offers it only anchors of its op types.
/// </summary>
internal interface IRewriteRule
{
    /// <summary>Shown in reports; the name users pass to switch the rule off.</summary>
    string Name { get; }
    /// <summary>Op types (default domain) of the nodes a decision is anchored on (e.g. "BatchNormalization").</summary>
    IReadOnlyCollection<string> AnchorOpTypes { get; }
    /// <summary>Pure: reads the graph (and asks the context's services), never writes it.</summary>
    Match TryMatch(RewriteContext context, NodeProto anchor);
    /// <summary>Never refuses: it only rewrites what the plan says, and records what it made.</summary>
    Applied Apply(GraphEditor editor, Plan plan);
}

/// <summary>What an apply step made: every tensor it created, and for each computed weight how to recompute it; for a
/// fold, the target's weights relative to the original's (kept for later folds into it); <paramref name="Composed"/>:
/// standalone nodes holding constants already composed from the original's and rounded (a merge's Mul + Add), which
/// later rewrites of the run must not compose again.</summary>
internal sealed record Applied(IReadOnlyList<string> Created, IReadOnlyList<WeightRecord> Weights, Affine.LinearState? State = null,
    IReadOnlyList<NodeProto>? Composed = null);

/// <summary>Base for rules with a typed plan.</summary>
internal abstract class RewriteRule<TPlan> : IRewriteRule where TPlan : Plan
{
    public abstract string Name { get; }
    public abstract IReadOnlyCollection<string> AnchorOpTypes { get; }
    public abstract Match TryMatch(RewriteContext context, NodeProto anchor);
    public Applied Apply(GraphEditor editor, Plan plan) => Apply(editor, (TPlan)plan);
    protected abstract Applied Apply(GraphEditor editor, TPlan plan);
}
