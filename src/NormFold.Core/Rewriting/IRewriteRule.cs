using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting;

public interface IRewriteRule
{
    /// <summary>Shown in reports, usable with --disable.</summary>
    string Name { get; }
    /// <summary>Op type of the node a decision is anchored on (e.g. "BatchNormalization").</summary>
    string AnchorOpType { get; }
    /// <summary>Pure: reads the graph, never writes it.</summary>
    Match TryMatch(GraphIndex graph, NodeProto anchor);
    /// <summary>Never refuses: it only rewrites what the plan says. Returns the names of tensors created.</summary>
    IReadOnlyList<string> Apply(GraphEditor editor, Plan plan);
}

/// <summary>Base for rules with a typed plan.</summary>
public abstract class RewriteRule<TPlan> : IRewriteRule where TPlan : Plan
{
    public abstract string Name { get; }
    public abstract string AnchorOpType { get; }
    public abstract Match TryMatch(GraphIndex graph, NodeProto anchor);
    public IReadOnlyList<string> Apply(GraphEditor editor, Plan plan) => Apply(editor, (TPlan)plan);
    protected abstract IReadOnlyList<string> Apply(GraphEditor editor, TPlan plan);
}
