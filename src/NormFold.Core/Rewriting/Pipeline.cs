using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Cleanup;

namespace NormFold.Rewriting;

public sealed record PipelineOptions
{
    /// <summary>Leave BNs that cannot be folded as BatchNormalization nodes: not turned into Mul + Add, not merged with
    /// the affine ops next to them (which then stay as they are too); other adjacent affine ops still merge.</summary>
    public bool KeepStandaloneBatchNorm { get; init; }
    /// <summary>Rule names switched off (any name in <see cref="RuleRegistry.RuleNames"/>).</summary>
    public IReadOnlySet<string> DisabledRules { get; init; } = new HashSet<string>();
    /// <summary>Cap on passes of a fixed-point phase over one graph (each pass can only rewrite what the previous one exposed).</summary>
    public int MaxPasses { get; init; } = 8;
    /// <summary>Replace decomposed GroupNorm (Reshape → InstanceNormalization → Reshape → Mul → Add) by GroupNormalization.</summary>
    public bool SwapGroupNorm { get; init; }
    /// <summary>Replace decomposed LayerNorm (ReduceMean → Sub → Pow → … → Add) by LayerNormalization.</summary>
    public bool SwapLayerNorm { get; init; }
    /// <summary>Replace GroupNormalization by its InstanceNormalization decomposition.</summary>
    public bool LowerGroupNorm { get; init; }
    /// <summary>
    /// Compute folded weights only when the model is saved, straight into the output file, so they are never held in
    /// memory. Until then their TensorProto.RawData is empty: read them through OnnxModel.RawBytes (which computes
    /// them). For a model that is saved next (Folding.FoldFile and the CLI set it); the default is off.
    /// </summary>
    public bool DeferWeightArithmetic { get; init; }
    /// <summary>Default-domain opset the model may be raised to when a rewrite needs it (0: never raise).</summary>
    public long TargetOpset { get; init; }
    /// <summary>
    /// With <see cref="DeferWeightArithmetic"/>, for a caller that saves next and can fold again: whether a deferred
    /// W·s is finite wherever W is (the pre-check that otherwise reads every such W ahead of the rules) is decided while
    /// W·s is computed; an element that overflows throws <see cref="Tensors.ScaledWeightOverflow"/>, and the caller
    /// folds again without this option (<see cref="Folding.Optimistically"/>), so decisions are the same either way.
    /// </summary>
    internal bool CheckFiniteWhenComputed { get; init; }
}

/// <summary>
/// Runs the phases of <see cref="RuleRegistry"/> over the model's graph and every If/Loop/Scan body (bodies first,
/// since they may read the enclosing graph's constants but never change them), then cleans up each graph. The pipeline
/// knows no rule's internals. Every anchor a rule has something to say about gets exactly one decision in the log
/// (every BatchNormalization does).
///
/// Which decision is reported for an anchor:
/// - Within a phase, rules are tried in order and the first plan is applied. When all refuse, the reported refusal is
///   the first one from a rule that recognised its pattern (any reason but ProducerNotFoldable / PatternMismatch, which
///   only say "not my pattern"); if none did, the first refusal. A disabled rule that would have rewritten the anchor
///   refuses with RuleDisabled, and later phases then leave that anchor alone (the user wants it as it is).
/// - Across phases, a later phase's verdict on an anchor an earlier phase left replaces it, keeping the earlier detail
///   after it: a rewrite (which keeps the earlier reason: why the anchor did not get the earlier rewrite), or a refusal
///   with another reason (the last obstacle). The same reason again keeps the earlier decision (it is about the anchor
///   itself).
/// </summary>
internal sealed class Pipeline(PipelineOptions? options = null)
{
    readonly PipelineOptions _options = options ?? new PipelineOptions();

    public static IEnumerable<string> RuleNames => RuleRegistry.RuleNames;

    public RewriteLog Run(OnnxModel model)
    {
        if (_options.LowerGroupNorm && _options.SwapGroupNorm)
            throw new InvalidUsageException("swapping in GroupNormalization and lowering it in one run would undo each other; run them separately");
        if (_options.TargetOpset != 0 && (_options.TargetOpset <= 0 || _options.TargetOpset > Normalization.OpsetUpgrade.HighestKnown))
            throw new InvalidUsageException($"target opset {_options.TargetOpset} is outside 1..{Normalization.OpsetUpgrade.HighestKnown}");
        foreach (var name in _options.DisabledRules)
            if (!RuleNames.Contains(name))
                throw new InvalidUsageException($"unknown rule '{name}' (rules: {string.Join(", ", RuleNames)})");
        var log = new RewriteLog();
        model.CheckFiniteWhenComputed = _options.DeferWeightArithmetic && _options.CheckFiniteWhenComputed;
        var names = new NameAllocator(model);
        var opsets = new OpsetService(model, _options.TargetOpset, names);
        ProcessGraph(model, model.Proto.Graph, null, "main", names, opsets, log);
        if (opsets.Raised) Normalization.OpsetUpgrade.RaiseIrVersion(model);
        return log;
    }

    /// <summary>Rewrites one graph after its bodies; returns orphaned names it does not define.</summary>
    HashSet<string> ProcessGraph(OnnxModel model, GraphProto graph, GraphIndex? parent, string path, NameAllocator names,
        OpsetService opsets, RewriteLog log)
    {
        var index = new GraphIndex(graph, model, parent, path);
        var orphansFromBodies = new HashSet<string>(StringComparer.Ordinal);
        bool bodyChanged = false;
        foreach (var node in graph.Node.ToList())
            foreach (var (body, bodyPath) in GraphPaths.Bodies(node, path))
            {
                int before = log.Decisions.Count;
                orphansFromBodies.UnionWith(ProcessGraph(model, body, index, bodyPath, names, opsets, log));
                for (int i = before; i < log.Decisions.Count; i++) bodyChanged |= log.Decisions[i].Outcome != Outcome.Left;
            }
        if (bodyChanged) index = new GraphIndex(graph, model, parent, path); // bodies now read other outer names

        Timeline.Mark("index");
        if (!model.CheckFiniteWhenComputed) Affine.FoldedValues.Prefetch(index);
        Timeline.Mark("prefetch");
        var editor = new GraphEditor(index, names, _options.DeferWeightArithmetic);
        editor.Orphans.UnionWith(orphansFromBodies);
        var context = new RewriteContext(index, opsets, _options);
        var decisions = new Decisions(path);
        for (int p = 0; p < RuleRegistry.Phases.Count; p++)
        {
            var phase = RuleRegistry.Phases[p];
            if (phase.IsOn(_options)) RunPhase(phase, p, context, editor, decisions);
            else if (phase.WhenOff is { } note)
                decisions.NoteOff(Anchors(editor, phase.Rules.SelectMany(r => r.AnchorOpTypes).ToHashSet(StringComparer.Ordinal)), note);
        }
        Timeline.Mark("rules");
        foreach (var d in decisions.InOrder(editor.RemovedNodes)) log.Add(d);
        var outer = GraphCleanup.Run(editor);
        Timeline.Mark("cleanup");
        outer.UnionWith(orphansFromBodies.Where(n => !index.Defines(n)));
        return outer;
    }

    void RunPhase(Phase phase, int phaseIndex, RewriteContext context, GraphEditor editor, Decisions decisions)
    {
        // Rules per anchor op type, in registry order.
        var rulesFor = new Dictionary<string, List<IRewriteRule>>(StringComparer.Ordinal);
        foreach (var rule in phase.Rules)
            foreach (var op in rule.AnchorOpTypes)
                (rulesFor.TryGetValue(op, out var list) ? list : rulesFor[op] = []).Add(rule);
        var opTypes = rulesFor.Keys.ToHashSet(StringComparer.Ordinal);
        if (context.Opsets.MayRaise)
        {
            context.Opsets.BeginSurvey();
            foreach (var anchor in Anchors(editor, opTypes))
                if (!decisions.LeftByDisabledRule(anchor, phaseIndex))
                    foreach (var rule in rulesFor[anchor.OpType])
                        if (!_options.DisabledRules.Contains(rule.Name) && rule.TryMatch(context, anchor) is Match.Planned) break;
            context.Opsets.Settle(context.Graph);
        }
        int passes = phase.Repeat == Repeat.Once ? 1 : Math.Max(1, _options.MaxPasses);
        for (int pass = 0; pass < passes; pass++)
        {
            bool changed = false;
            foreach (var anchor in Anchors(editor, opTypes))
            {
                if (editor.RemovedNodes.Contains(anchor)) continue; // part of a pattern an earlier anchor replaced
                if (decisions.LeftByDisabledRule(anchor, phaseIndex)) continue;
                if (Decide(rulesFor[anchor.OpType], context, editor, anchor, decisions.Path) is not { } decision) continue;
                decisions.Record(anchor, decision, phaseIndex, phase.Name);
                changed |= decision.Outcome != Outcome.Left;
            }
            if (!changed) break;
        }
    }

    /// <summary>The anchor's decision in this phase (see the class comment), or null when no rule sees a candidate.</summary>
    Decision? Decide(List<IRewriteRule> rules, RewriteContext context, GraphEditor editor, NodeProto anchor, string path)
    {
        Match.Refused? first = null, recognised = null;
        foreach (var rule in rules)
        {
            bool disabled = _options.DisabledRules.Contains(rule.Name);
            var match = disabled ? Probe(rule, context, anchor) : rule.TryMatch(context, anchor);
            if (match is Match.Planned planned)
            {
                if (disabled)
                {
                    recognised ??= Match.Refuse(SkipReason.RuleDisabled, $"{rule.Name} (disabled) would have {planned.Plan.Describe()}");
                    continue;
                }
                string description = planned.Plan.Describe();
                string? target = planned.Plan.Target is { } t ? Attributes.Describe(t) : null;
                var applied = rule.Apply(editor, planned.Plan);
                if (applied.State is { } state && planned.Plan.Target is { } folded) context.Folds[folded] = state;
                if (applied.Composed is { } composed) context.Composed.UnionWith(composed);
                return new Decision(path, NodeLabel(anchor), anchor.OpType, planned.Plan.Target is null ? Outcome.Replaced : Outcome.Folded,
                    rule.Name, target, null, description, applied.Created, applied.Weights);
            }
            if (match is not Match.Refused refused) continue;
            first ??= refused;
            if (!SkipReasons.MeansNotThisPattern(refused.Reason)) recognised ??= refused;
        }
        return (recognised ?? first) is { } why ? Left(anchor, path, why) : null;
    }

    /// <summary>Whether a disabled rule would rewrite the anchor. Its plan is never applied, so no deferred W·s of it is
    /// ever computed and checked (PipelineOptions.CheckFiniteWhenComputed): its finite-result pre-check runs here.</summary>
    static Match Probe(IRewriteRule rule, RewriteContext context, NodeProto anchor)
    {
        var model = context.Graph.Model;
        if (!model.CheckFiniteWhenComputed) return rule.TryMatch(context, anchor);
        model.CheckFiniteWhenComputed = false;
        try { return rule.TryMatch(context, anchor); }
        finally { model.CheckFiniteWhenComputed = true; }
    }

    /// <summary>Anchors of the given op types (default domain) still in the graph, in graph order: the one place anchors
    /// are selected.</summary>
    static List<NodeProto> Anchors(GraphEditor editor, HashSet<string> types)
    {
        var anchors = new List<NodeProto>();
        foreach (var n in editor.Index.Graph.Node)
            if (types.Contains(n.OpType) && Attributes.IsDefaultDomain(n) && !editor.RemovedNodes.Contains(n)) anchors.Add(n);
        return anchors;
    }

    static Decision Left(NodeProto anchor, string path, Match.Refused refused) =>
        new(path, NodeLabel(anchor), anchor.OpType, Outcome.Left, null, null, refused.Reason, refused.Detail, [], []);

    internal static string NodeLabel(NodeProto n) => n.Name.Length > 0 ? n.Name : $"<{n.OpType} → {n.Output.FirstOrDefault()}>";

    /// <summary>One graph's decisions, one per anchor, in the order anchors were first decided.</summary>
    sealed class Decisions(string path)
    {
        public string Path { get; } = path;
        readonly Dictionary<NodeProto, (Decision Decision, int Phase, string PhaseName)> _byAnchor = new(ReferenceEqualityComparer.Instance);
        readonly List<NodeProto> _order = [];
        /// <summary>The phase whose "not my pattern" detail was last appended to an anchor's earlier refusal (a
        /// fixed-point phase records each anchor once per pass; the detail goes in once).</summary>
        readonly Dictionary<NodeProto, int> _appendedIn = new(ReferenceEqualityComparer.Instance);

        /// <summary>Anchors left in an earlier phase and then taken into another anchor's rewrite (a Mul that a later
        /// swap replaced with its pattern) have no decision of their own: that rewrite's decision covers them.</summary>
        public IEnumerable<Decision> InOrder(IReadOnlySet<NodeProto> removed) =>
            _order.Where(a => !(removed.Contains(a) && _byAnchor[a].Decision.Outcome == Outcome.Left)).Select(a => _byAnchor[a].Decision);

        /// <summary>An earlier phase left the anchor because the user disabled the rule that would have rewritten it.</summary>
        public bool LeftByDisabledRule(NodeProto anchor, int phase) =>
            _byAnchor.TryGetValue(anchor, out var d) && d.Phase < phase && d.Decision.Reason == SkipReason.RuleDisabled;

        public void Record(NodeProto anchor, Decision decision, int phase, string phaseName)
        {
            if (!_byAnchor.TryGetValue(anchor, out var earlier)) _order.Add(anchor);
            else if (earlier.Phase != phase)
            {
                // A later "not my pattern" says less than an earlier refusal: that one stands, with the later detail
                // after it (a BN whose input comes from a Relu, and whose output goes to a Relu).
                if (decision.Outcome == Outcome.Left && earlier.Decision.Outcome == Outcome.Left
                    && SkipReasons.MeansNotThisPattern(decision.Reason!.Value))
                {
                    if (_appendedIn.TryGetValue(anchor, out int appended) && appended == phase) return;
                    _appendedIn[anchor] = phase;
                    _byAnchor[anchor] = earlier with { Decision = earlier.Decision with { Detail = $"{earlier.Decision.Detail}; {phaseName} phase: {decision.Detail}" } };
                    return;
                }
                if (decision.Outcome == Outcome.Left && decision.Reason == earlier.Decision.Reason) return;
                decision = decision with
                {
                    // A rewrite keeps the earlier reason: why the anchor did not get the earlier (better) rewrite.
                    Reason = decision.Outcome == Outcome.Left ? decision.Reason : earlier.Decision.Reason,
                    Detail = $"{decision.Detail}; {earlier.PhaseName} phase: {earlier.Decision.Detail}",
                };
            }
            _byAnchor[anchor] = (decision, phase, phaseName);
        }

        public void NoteOff(IEnumerable<NodeProto> anchors, string note)
        {
            foreach (var a in anchors)
                if (_byAnchor.TryGetValue(a, out var d) && d.Decision.Outcome == Outcome.Left && d.Decision.Reason != SkipReason.RuleDisabled)
                    _byAnchor[a] = d with { Decision = d.Decision with { Detail = $"{d.Decision.Detail}; {note}" } };
        }
    }
}
