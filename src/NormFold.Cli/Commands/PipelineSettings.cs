using NormFold.Rewriting;

namespace NormFold.Cli.Commands;

/// <summary>Options shared by `fold` and `inspect` that choose what the pipeline does.</summary>
public static class PipelineSettings
{
    public static readonly OptionSpec[] Options =
    [
        new("--keep-standalone-bn", null, "leave BNs that cannot be folded as BatchNormalization instead of Mul + Add"),
        new("--disable", "RULE[,RULE]", "switch rules off (names as in the table's Rule column)", Repeatable: true),
    ];

    public static PipelineOptions Parse(string command, ParsedArgs args)
    {
        var disabled = args.Values("--disable")
            .SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToHashSet();
        foreach (var rule in disabled)
            if (!Pipeline.RuleNames.Contains(rule))
                throw new UsageException($"{command}: --disable: unknown rule '{rule}' (rules: {string.Join(", ", Pipeline.RuleNames)})");
        return new PipelineOptions { KeepStandaloneBatchNorm = args.Has("--keep-standalone-bn"), DisabledRules = disabled };
    }
}
