using System.Text;

namespace NormFold.Cli.Commands;

/// <summary>A subcommand: its usage, options and body. `--help` is handled here for every command.</summary>
public abstract class Command
{
    public abstract string Name { get; }
    public abstract string Usage { get; }
    public abstract string Summary { get; }
    public abstract string Description { get; }
    public abstract IReadOnlyList<OptionSpec> Options { get; }
    /// <summary>The exit codes this command can return, for --help.</summary>
    public virtual string ExitCodesHelp => "0 success, 1 internal error, 2 equivalence check failed, 3 invalid model or arguments";

    public static readonly OptionSpec Help = new("--help", null, "show this help", Alias: "-h");
    public static readonly OptionSpec Verbose = new("--verbose", null, "on errors, print the stack trace too", Alias: "-v");

    public int Run(IReadOnlyList<string> args, TextWriter stdout)
    {
        var all = Options.Append(Help).Append(Verbose).ToList();
        if (args.Contains("--help") || args.Contains("-h")) { stdout.Write(HelpText(all)); return ExitCodes.Success; }
        return Execute(ParsedArgs.Parse(Name, args, all), stdout);
    }

    protected abstract int Execute(ParsedArgs args, TextWriter stdout);

    string HelpText(IReadOnlyList<OptionSpec> all)
    {
        var sb = new StringBuilder();
        sb.Append($"Usage: {Usage}\n\n{Description}\n\nOptions:\n");
        int width = all.Max(o => Left(o).Length);
        foreach (var o in all) sb.Append("  ").Append(Left(o).PadRight(width + 2)).Append(o.Help).Append('\n');
        sb.Append($"\nExit codes: {ExitCodesHelp}.\n");
        return sb.ToString();
    }

    static string Left(OptionSpec o) =>
        (o.Alias is null ? "" : o.Alias + ", ") + o.Name + (o.ValueName is null ? "" : " " + o.ValueName);

    protected string SinglePositional(ParsedArgs args, string what)
    {
        if (args.Positionals.Count != 1)
            throw new InvalidUsageException($"{Name}: expected one {what}, got {args.Positionals.Count} (usage: {Usage})");
        return args.Positionals[0];
    }
}
