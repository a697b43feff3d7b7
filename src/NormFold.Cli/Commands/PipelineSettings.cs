using NormFold.Rewriting;

namespace NormFold.Cli.Commands;

/// <summary>Options shared by `fold` and `inspect` that choose what the pipeline does.</summary>
internal static class PipelineSettings
{
    public static readonly OptionSpec[] Options =
    [
        new("--keep-standalone-bn", null, "leave BNs that cannot be folded as BatchNormalization (not Mul + Add, not merged with the affine ops next to them; other affine ops still merge)"),
        new("--disable", "RULE[,RULE]", "switch rules off (names as in the table's Rule column)", Repeatable: true),
        new("--swap-groupnorm", null, "replace decomposed GroupNorm (Reshape→InstanceNormalization→Reshape→Mul→Add) by GroupNormalization"),
        new("--swap-layernorm", null, "replace decomposed LayerNorm (ReduceMean→Sub→Pow→ReduceMean→Add→Sqrt→Div→Mul→Add) by LayerNormalization"),
        new("--lower-groupnorm", null, "replace GroupNormalization by its InstanceNormalization decomposition (for runtimes without it)"),
        new("--target-opset", "N", "allow raising the model's opset to N when a swap needs it (only if no other node changes meaning)"),
    ];

    public static PipelineOptions Parse(string command, ParsedArgs args)
    {
        var disabled = args.Values("--disable")
            .SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToHashSet();
        foreach (var rule in disabled)
            if (!Pipeline.RuleNames.Contains(rule))
                throw new InvalidUsageException($"{command}: --disable: unknown rule '{rule}' (rules: {string.Join(", ", Pipeline.RuleNames)})");
        if (args.Has("--swap-groupnorm") && args.Has("--lower-groupnorm"))
            throw new InvalidUsageException($"{command}: --swap-groupnorm and --lower-groupnorm would undo each other; run them separately");
        int target = args.Int(command, "--target-opset", 0, min: 1);
        if (target != 0 && !args.Has("--swap-groupnorm") && !args.Has("--swap-layernorm"))
            throw new InvalidUsageException($"{command}: --target-opset only applies to --swap-groupnorm and --swap-layernorm (NormFold never lowers an opset)");
        if (target > Rewriting.Normalization.OpsetUpgrade.HighestKnown)
            throw new InvalidUsageException($"{command}: --target-opset {target} is past opset {Rewriting.Normalization.OpsetUpgrade.HighestKnown}, the newest NormFold knows");
        return new PipelineOptions
        {
            KeepStandaloneBatchNorm = args.Has("--keep-standalone-bn"),
            DisabledRules = disabled,
            SwapGroupNorm = args.Has("--swap-groupnorm"),
            SwapLayerNorm = args.Has("--swap-layernorm"),
            LowerGroupNorm = args.Has("--lower-groupnorm"),
            TargetOpset = target,
            DeferWeightArithmetic = true, // the CLI saves what it folds: folded weights go straight to the file
        };
    }
}
