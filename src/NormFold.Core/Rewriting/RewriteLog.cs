namespace NormFold.Rewriting;

public enum Outcome
{
    /// <summary>Absorbed into the producer's weights; the anchor node is gone.</summary>
    Folded,
    /// <summary>Replaced by other nodes (standalone BN → Mul + Add).</summary>
    Replaced,
    /// <summary>Left in the graph; the reason says why.</summary>
    Left,
}

/// <summary>One decision about one anchor node: what was done (rule, target, tensors created, and how each computed
/// weight follows from the original's), or why nothing was.</summary>
public sealed record Decision(
    string Graph,
    string Anchor,
    string AnchorOpType,
    Outcome Outcome,
    string? Rule,
    string? Target,
    SkipReason? Reason,
    string Detail,
    IReadOnlyList<string> Created,
    IReadOnlyList<WeightRecord> Weights);

/// <summary>Every decision a run made, in graph order. The console table, the JSON report and the weight audit
/// (which replays <see cref="Decision.Weights"/>) are views of it.</summary>
public sealed class RewriteLog
{
    readonly List<Decision> _decisions = [];
    public IReadOnlyList<Decision> Decisions => _decisions;
    public void Add(Decision d) => _decisions.Add(d);
    public int Count(Outcome o) => _decisions.Count(d => d.Outcome == o);
}
