using NormFold.Onnx.Proto;

namespace NormFold.Rewriting;

/// <summary>What a rule's match step concluded: a plan to apply, or a named reason not to.</summary>
public abstract record Match
{
    public sealed record Planned(Plan Plan) : Match;
    public sealed record Refused(SkipReason Reason, string Detail) : Match;

    public static Refused Refuse(SkipReason reason, string detail) => new(reason, detail);
}

/// <summary>Everything an apply step needs, computed by the match step. Subclassed per rule.</summary>
public abstract record Plan(NodeProto Anchor, NodeProto? Target)
{
    /// <summary>What the rewrite does, for the report.</summary>
    public virtual string Describe() => "";
}
