using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.BatchNorm;
using NormFold.Rewriting.Cleanup;

namespace NormFold.Rewriting;

public sealed record PipelineOptions
{
    /// <summary>Leave BNs that cannot be folded as they are, instead of turning them into Mul + Add.</summary>
    public bool KeepStandaloneBatchNorm { get; init; }
    /// <summary>Rule names switched off.</summary>
    public IReadOnlySet<string> DisabledRules { get; init; } = new HashSet<string>();
    /// <summary>Cap on passes over one graph (each pass can only fold what the previous one exposed).</summary>
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
    /// <summary>Default-domain opset the model may be raised to when a swap needs it (0: never raise).</summary>
    public long TargetOpset { get; init; }
}

/// <summary>
/// Runs the rules over the model's graph and every If/Loop/Scan body (bodies first, since they may read the
/// enclosing graph's constants but never change them), then cleans up each graph. Every BatchNormalization
/// gets exactly one decision in the log.
/// </summary>
public sealed class Pipeline(PipelineOptions? options = null)
{
    readonly PipelineOptions _options = options ?? new PipelineOptions();

    /// <summary>Fold rules, tried in order on each BN; each accepts only its own producer op types, so order
    /// among them does not matter.</summary>
    public static IReadOnlyList<IRewriteRule> FoldRules { get; } =
        [new IntoConv(), new IntoConvTranspose(), new IntoGemm(), new IntoMatMul()];

    /// <summary>Must run after the fold rules reach a fixed point: a BN turned into Mul + Add can no longer be folded.</summary>
    public static IRewriteRule StandaloneRule { get; } = new ToMulAdd();

    public static IEnumerable<string> RuleNames => FoldRules.Select(r => r.Name).Append(StandaloneRule.Name);

    /// <summary>Opt-in rewrites, run after BN folding (they touch other nodes), each anchored on its own op type.</summary>
    List<IRewriteRule> SwapRules()
    {
        var rules = new List<IRewriteRule>();
        if (_options.SwapGroupNorm) rules.Add(new Normalization.GroupNormSwap(_options.TargetOpset));
        if (_options.SwapLayerNorm) rules.Add(new Normalization.LayerNormSwap(_options.TargetOpset));
        if (_options.LowerGroupNorm) rules.Add(new Normalization.GroupNormLowering());
        return rules;
    }

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
        var names = new NameAllocator(model);
        ProcessGraph(model, model.Proto.Graph, null, "main", names, log);
        return log;
    }

    /// <summary>Rewrites one graph after its bodies; returns orphaned names it does not define.</summary>
    HashSet<string> ProcessGraph(OnnxModel model, GraphProto graph, GraphIndex? parent, string path, NameAllocator names, RewriteLog log)
    {
        var index = new GraphIndex(graph, model, parent, path);
        var orphansFromBodies = new HashSet<string>(StringComparer.Ordinal);
        bool bodyChanged = false;
        foreach (var node in graph.Node.ToList())
            foreach (var attr in node.Attribute)
            {
                var bodies = attr.G != null ? [attr.G] : attr.Graphs.ToList();
                for (int k = 0; k < bodies.Count; k++)
                {
                    string bodyPath = $"{path}/{NodeLabel(node)}:{attr.Name}{(attr.G != null ? "" : $"[{k}]")}";
                    int before = log.Decisions.Count;
                    orphansFromBodies.UnionWith(ProcessGraph(model, bodies[k], index, bodyPath, names, log));
                    bodyChanged |= log.Decisions.Skip(before).Any(d => d.Outcome != Outcome.Left);
                }
            }
        if (bodyChanged) index = new GraphIndex(graph, model, parent, path); // bodies now read other outer names

        var editor = new GraphEditor(index, names, _options.DeferWeightArithmetic);
        editor.Orphans.UnionWith(orphansFromBodies);
        var decisions = new Dictionary<NodeProto, Decision>(ReferenceEqualityComparer.Instance);
        var order = new List<NodeProto>();

        for (int pass = 0; pass < _options.MaxPasses; pass++)
        {
            bool folded = false;
            foreach (var bn in Anchors(graph, editor))
            {
                if (!decisions.ContainsKey(bn)) order.Add(bn);
                var (decision, changed) = DecideFold(editor, bn, path);
                decisions[bn] = decision;
                folded |= changed;
            }
            if (!folded) break;
        }

        foreach (var bn in Anchors(graph, editor).ToList())
            decisions[bn] = DecideStandalone(editor, bn, path, decisions[bn]);

        foreach (var bn in order) log.Add(decisions[bn]);
        foreach (var rule in SwapRules()) SwapPhase(model, editor, rule, path, log);
        var outer = GraphCleanup.Run(editor);
        outer.UnionWith(orphansFromBodies.Where(n => !index.Defines(n)));
        return outer;
    }

    static IEnumerable<NodeProto> Anchors(GraphProto graph, GraphEditor editor) =>
        graph.Node.Where(n => n.OpType == "BatchNormalization" && Attributes.IsDefaultDomain(n) && !editor.RemovedNodes.Contains(n)).ToList();

    (Decision, bool) DecideFold(GraphEditor editor, NodeProto bn, string path)
    {
        Match.Refused? best = null;
        foreach (var rule in FoldRules)
        {
            var match = rule.TryMatch(editor.Index, bn);
            if (match is Match.Planned planned)
            {
                if (_options.DisabledRules.Contains(rule.Name))
                {
                    best = Match.Refuse(SkipReason.RuleDisabled, $"{rule.Name} would fold it into {Attributes.Describe(planned.Plan.Target!)}");
                    continue;
                }
                string target = Attributes.Describe(planned.Plan.Target!);
                var created = rule.Apply(editor, planned.Plan);
                return (new Decision(path, NodeLabel(bn), bn.OpType, Outcome.Folded, rule.Name, target, null,
                    $"folded into {target}", created), true);
            }
            var refused = (Match.Refused)match;
            if (best is null || (best.Reason == SkipReason.ProducerNotFoldable && refused.Reason != SkipReason.ProducerNotFoldable))
                best = refused;
        }
        return (Left(bn, path, best!), false);
    }

    Decision DecideStandalone(GraphEditor editor, NodeProto bn, string path, Decision foldDecision)
    {
        var rule = StandaloneRule;
        if (foldDecision.Reason == SkipReason.RuleDisabled) return foldDecision; // the user wants this BN left alone
        if (_options.KeepStandaloneBatchNorm || _options.DisabledRules.Contains(rule.Name))
            return foldDecision with { Detail = $"{foldDecision.Detail}; kept as BatchNormalization (--keep-standalone-bn or {rule.Name} disabled)" };
        var match = rule.TryMatch(editor.Index, bn);
        if (match is Match.Refused refused)
            // Same reason: it is about the BN itself. Otherwise the fold was stopped by the producer and
            // Mul + Add by something else; report the last obstacle and keep both details.
            return refused.Reason == foldDecision.Reason
                ? foldDecision
                : foldDecision with { Reason = refused.Reason, Detail = $"{refused.Detail}; not foldable either: {foldDecision.Detail}" };
        var created = rule.Apply(editor, ((Match.Planned)match).Plan);
        return foldDecision with
        {
            Outcome = Outcome.Replaced, Rule = rule.Name, Target = null, Created = created,
            Detail = $"replaced by Mul + Add; not folded: {foldDecision.Detail}",
        };
    }

    /// <summary>
    /// One decision per anchor of an opt-in rule. When plans need a newer opset than the model imports and the target
    /// allows it, the opset is raised once — if no node outside the matched patterns changes meaning at the new version.
    /// </summary>
    void SwapPhase(OnnxModel model, GraphEditor editor, IRewriteRule rule, string path, RewriteLog log)
    {
        List<NodeProto> Anchors() => editor.Index.Graph.Node.Where(n => n.OpType == rule.AnchorOpType
            && Attributes.IsDefaultDomain(n) && !editor.RemovedNodes.Contains(n)).ToList();
        string? blocked = null;
        // A dry run decides whether to raise the opset; without a target above the model's it cannot, so skip it.
        var dryRun = _options.TargetOpset > model.DefaultOpset
            ? Anchors().Select(a => rule.TryMatch(editor.Index, a)).OfType<Match.Planned>().ToList()
            : [];
        long needed = dryRun.Select(p => p.Plan is Normalization.IOpsetPlan o ? o.RequiredOpset : 0).DefaultIfEmpty(0).Max();
        if (needed > model.DefaultOpset)
        {
            var excused = dryRun.SelectMany(p => p.Plan is Normalization.IOpsetPlan o ? o.Removed : []).ToHashSet(ReferenceEqualityComparer.Instance);
            var blockers = Normalization.OpsetUpgrade.Blockers(model, needed, excused.Cast<NodeProto>().ToHashSet());
            if (blockers.Count == 0) Normalization.OpsetUpgrade.Raise(model, needed);
            else blocked = $"raising the opset from {model.DefaultOpset} to {needed} would change {blockers.Count} other node(s): {string.Join("; ", blockers.Take(5))}{(blockers.Count > 5 ? "; …" : "")}";
        }
        foreach (var anchor in Anchors())
        {
            if (editor.RemovedNodes.Contains(anchor)) continue; // part of a pattern an earlier anchor replaced
            var match = rule.TryMatch(editor.Index, anchor);
            if (match is Match.Planned { Plan: Normalization.IOpsetPlan { RequiredOpset: var required } } && required > model.DefaultOpset)
                match = Match.Refuse(SkipReason.OpsetTooLow, blocked ?? $"needs opset {required}, the model imports {model.DefaultOpset}");
            if (match is Match.Planned planned)
            {
                var created = rule.Apply(editor, planned.Plan);
                log.Add(new Decision(path, NodeLabel(anchor), anchor.OpType, Outcome.Replaced, rule.Name, null, null,
                    planned.Plan.Describe(), created));
            }
            else
                log.Add(Left(anchor, path, (Match.Refused)match));
        }
    }

    static Decision Left(NodeProto bn, string path, Match.Refused refused) =>
        new(path, NodeLabel(bn), bn.OpType, Outcome.Left, null, null, refused.Reason, refused.Detail, []);

    static string NodeLabel(NodeProto n) => n.Name.Length > 0 ? n.Name : $"<{n.OpType} → {n.Output.FirstOrDefault()}>";
}
