using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting;

/// <summary>What a rule's match step concluded: a plan to apply, a named reason not to, or that the anchor is no
/// candidate of this rule at all (no decision is logged for it unless another rule has something to say).</summary>
internal abstract record Match
{
    public sealed record Planned(Plan Plan) : Match;
    public sealed record Refused(SkipReason Reason, string Detail) : Match;
    /// <summary>The anchor is not what the rule looks for (a plain ReduceMean for the LayerNorm swap); or it is part of
    /// a pattern whose decision is anchored on another node.</summary>
    public sealed record NoCandidate(string Why) : Match;

    public static Refused Refuse(SkipReason reason, string detail) => new(reason, detail);

    /// <summary>The refusal when a rewrite needs the rank of <paramref name="x"/> (<paramref name="why"/>: what for) and the
    /// graph does not prove it, naming where the proof stops.</summary>
    public static Refused UnprovenRank(GraphIndex g, string x, string? why = null) =>
        Refuse(SkipReason.UnknownRank, $"the rank of '{x}' does not follow from the graph's inputs and constants (a declared value_info is no proof)"
            + (why is null ? "" : $": {why}") + $"; {g.RankLostAt(x)}");
}

/// <summary>Everything an apply step needs, computed by the match step. Subclassed per rule.</summary>
internal abstract record Plan(NodeProto Anchor, NodeProto? Target)
{
    /// <summary>What the rewrite does, for the report ("folded into Conv 'c1'", "replaced by Mul + Add").</summary>
    public virtual string Describe() => Target is null ? "rewritten" : $"folded into {Attributes.Describe(Target)}";
}
