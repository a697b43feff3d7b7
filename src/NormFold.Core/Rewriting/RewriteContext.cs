using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Normalization;

namespace NormFold.Rewriting;

/// <summary>What a rule's match step may read and ask: the graph, and the services the pipeline provides.</summary>
internal sealed class RewriteContext(GraphIndex graph, OpsetService opsets, PipelineOptions? options = null)
{
    /// <summary>What the user asked for (rules read the switches that change what they may do, e.g. keeping BNs).</summary>
    public PipelineOptions Options { get; } = options ?? new PipelineOptions();
    public GraphIndex Graph { get; } = graph;
    /// <summary>Whether a rewrite may use an operator version newer than the model imports.</summary>
    public OpsetService Opsets { get; } = opsets;
    /// <summary>Linear ops folded into so far in this graph, with their weights relative to the original's (a later
    /// fold into the same op composes with it and rounds once).</summary>
    public Dictionary<NodeProto, Affine.LinearState> Folds { get; } = new(ReferenceEqualityComparer.Instance);
    /// <summary>Nodes a rewrite of this run made from composed, rounded constants (<see cref="Applied.Composed"/>).</summary>
    public HashSet<NodeProto> Composed { get; } = new(ReferenceEqualityComparer.Instance);
}

/// <summary>
/// Opset gating, asked by rules whose new nodes need a newer default-domain opset. The model's opset is raised at most
/// to the target the user allowed, and only when no other node would change meaning. Within a phase the pipeline first
/// surveys every anchor (each <see cref="Require"/> is answered yes and remembered), then settles once: raise to the
/// highest version asked for, excusing the nodes the surveyed rewrites replace; then the real pass gets the verdict.
/// </summary>
internal sealed class OpsetService(OnnxModel model, long target, NameAllocator? names = null)
{
    bool _surveying;
    long _asked;
    readonly HashSet<NodeProto> _excused = new(ReferenceEqualityComparer.Instance);
    string? _blocked;

    /// <summary>The model's default-domain opset now.</summary>
    public long Current => model.DefaultOpset;
    /// <summary>The highest version a rule may ask for: the model's, or the allowed target when higher.</summary>
    public long Reachable => Math.Max(Current, target);

    /// <summary>Null when a node of <paramref name="version"/> may be used (the opset is, or will be, high enough); else
    /// the refusal. <paramref name="replaced"/>: the nodes the rewrite removes (they need not keep their meaning).</summary>
    public Match.Refused? Require(long version, string what, IReadOnlyCollection<NodeProto> replaced)
    {
        if (version <= Current) return null;
        if (version > Reachable)
            return Match.Refuse(SkipReason.OpsetTooLow,
                $"{what} needs opset {version}, the model imports {Current}; a target opset of {version} or more allows raising it");
        if (_surveying)
        {
            _asked = Math.Max(_asked, version);
            _excused.UnionWith(replaced);
            return null;
        }
        return Match.Refuse(SkipReason.OpsetTooLow, _blocked ?? $"{what} needs opset {version}, the model imports {Current}");
    }

    /// <summary>True once the opset was raised (the IR version follows when the rewrites are done).</summary>
    internal bool Raised { get; private set; }

    /// <summary>Only worth a survey when the target is above the model's opset.</summary>
    internal bool MayRaise => target > Current;

    internal void BeginSurvey()
    {
        _surveying = true;
        _asked = 0;
        _excused.Clear();
    }

    /// <summary>Ends the survey: raises the opset to the highest version asked for, unless another node would change.</summary>
    internal void Settle(GraphIndex? live = null)
    {
        _surveying = false;
        _blocked = null;
        if (_asked <= Current) return;
        var blockers = OpsetUpgrade.Blockers(model, _asked, _excused);
        if (blockers.Count == 0) { OpsetUpgrade.Raise(model, _asked, names, _excused, live); Raised = true; }
        else _blocked = $"raising the opset from {Current} to {_asked} would change {blockers.Count} other node(s): " +
                        $"{string.Join("; ", blockers.Take(5))}{(blockers.Count > 5 ? "; …" : "")}";
    }
}
