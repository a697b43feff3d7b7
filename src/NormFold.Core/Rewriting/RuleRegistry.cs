using NormFold.Rewriting.BatchNorm;
using NormFold.Rewriting.Normalization;

namespace NormFold.Rewriting;

/// <summary>How often a phase runs over a graph.</summary>
internal enum Repeat
{
    /// <summary>One pass over the anchors.</summary>
    Once,
    /// <summary>Passes until one changes nothing (capped by <see cref="PipelineOptions.MaxPasses"/>): a rewrite can
    /// expose another (after Conv → BN → BN folds its first BN, the second one reads the Conv).</summary>
    ToFixedPoint,
}

/// <summary>
/// A phase: rules tried in order on each anchor (a node of one of their op types), and how often it runs.
/// <paramref name="Enabled"/>: whether the options switch it on. <paramref name="WhenOff"/>: appended to the detail of
/// anchors an earlier phase left, when this phase is switched off (so the report says why they stay as they are).
/// </summary>
internal sealed record Phase(string Name, Repeat Repeat, IReadOnlyList<IRewriteRule> Rules,
    Func<PipelineOptions, bool>? Enabled = null, string? WhenOff = null)
{
    public bool IsOn(PipelineOptions o) => Enabled?.Invoke(o) ?? true;
}

/// <summary>
/// Every rule NormFold has, in the order the pipeline runs them. Adding a rule: one file (match → plan or named refusal;
/// apply), one line here, one test class.
/// </summary>
internal static class RuleRegistry
{
    public static IReadOnlyList<Phase> Phases { get; } =
    [
        // Folds into a neighbour's weights come first: they remove nodes, and a BN turned into Mul + Add could no longer
        // be folded. Each BN rule accepts only its own producer op types, so their order does not matter.
        new("fold", Repeat.ToFixedPoint,
        [
            // Before the BN rules: a BN with affine ops around it folds with them in one rounding.
            new Affine.AffineIntoConv(),
            new Affine.AffineIntoConvTranspose(),
            new Affine.AffineIntoGemm(),
            new Affine.AffineIntoMatMul(),
            new IntoConv(),
            new IntoConvTranspose(),
            new IntoGemm(),
            new IntoMatMul(),
        ]),
        // Opt-in swaps after the folds: they replace whole subgraphs, which must no longer change under them; they read
        // the folded graph (a GroupNorm's Mul/Add constants are not BN parameters).
        new("swap-groupnorm", Repeat.Once, [new GroupNormSwap()], o => o.SwapGroupNorm),
        new("swap-layernorm", Repeat.Once, [new LayerNormSwap()], o => o.SwapLayerNorm),
        new("lower-groupnorm", Repeat.Once, [new GroupNormLowering()], o => o.LowerGroupNorm),
        // What no producer could absorb, the consumer may (exact only without padding when there is a shift). After the
        // swaps: forward folds and merges would take their patterns' Mul/Add apart (backward folds never do: those
        // Mul/Add follow normalisations, not linear ops).
        new("forward", Repeat.ToFixedPoint,
        [
            new Affine.AffineForwardIntoConv(),
            new Affine.AffineForwardIntoGemm(),
            new Affine.AffineForwardIntoMatMul(),
        ]),
        // Affine ops nothing could absorb, next to each other, become one Mul + Add; before "standalone", so a BN among
        // them merges with its neighbours instead of becoming a Mul + Add of its own (when standalone BNs are kept, a
        // run with a BN in it is left as it is: the rule asks the option).
        new("merge", Repeat.Once, [new Affine.AffineMerge()]),
        // Only the BNs nothing could absorb or merge: must run after "fold", "forward" and "merge".
        new("standalone", Repeat.Once,
        [
            new ToMulAdd(),
        ], o => !o.KeepStandaloneBatchNorm, WhenOff: "kept as BatchNormalization: standalone BNs are kept"),
    ];

    /// <summary>Every rule's name, in registry order: all are accepted by <see cref="PipelineOptions.DisabledRules"/>.</summary>
    public static IReadOnlyList<string> RuleNames { get; } = Phases.SelectMany(p => p.Rules).Select(r => r.Name).ToList();
}
