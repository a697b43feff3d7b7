using System.Text;

namespace NormFold.Cli.Commands;

/// <summary>A subcommand: its usage, options and body. `--help`, `--quiet` and `--verbose` are handled here for every command.</summary>
internal abstract class Command
{
    public abstract string Name { get; }
    public abstract string Usage { get; }
    public abstract string Summary { get; }
    public abstract string Description { get; }
    public abstract IReadOnlyList<OptionSpec> Options { get; }
    /// <summary>The exit codes this command can return, for --help.</summary>
    public virtual string ExitCodesHelp => "0 success, 1 internal error, 2 equivalence check failed, 3 invalid model or arguments";
    /// <summary>What -q leaves, for --help.</summary>
    protected virtual string QuietHelp => "print only errors and the summary line";

    public static readonly OptionSpec Help = new("--help", null, "show this help", Alias: "-h");
    public static readonly OptionSpec Verbose = new("--verbose", null, "on errors, print the stack trace too", Alias: "-v");

    /// <summary>Help lines are wrapped to this width.</summary>
    public const int HelpWidth = 100;

    IReadOnlyList<OptionSpec> All => [.. Options, new("--quiet", null, QuietHelp, Alias: "-q"), Help, Verbose];

    public int Run(IReadOnlyList<string> args, TextWriter stdout)
    {
        var all = All;
        if (args.Contains("--help") || args.Contains("-h")) { stdout.Write(HelpText(all)); return ExitCodes.Success; }
        var parsed = ParsedArgs.Parse(Name, args, all);
        var io = new Io(Name, parsed, all, stdout, args);
        try { return Execute(parsed, io); }
        catch (Exception e)
        {
            ReportError(io, e);
            throw;
        }
    }

    /// <summary>A run that ends in an error (exit 3 or 1) still gives CI its JUnit error and Markdown summary; the
    /// error itself is printed by the caller.</summary>
    void ReportError(Io io, Exception e)
    {
        try { ReportSettings.WriteError(io, Name, Cli.IsInputError(e) ? ExitCodes.InvalidInput : ExitCodes.InternalError, e.Message); }
        catch (Exception) { } // a report that cannot be written cannot carry the error either
    }

    protected abstract int Execute(ParsedArgs args, Io io);

    string HelpText(IReadOnlyList<OptionSpec> all)
    {
        var sb = new StringBuilder();
        sb.Append(Printing.Wrap($"Usage: {Usage}", HelpWidth, "       ")).Append('\n');
        // Single newlines in the description are soft; a blank line starts a paragraph.
        foreach (var paragraph in Description.Replace("\n\n", "\u0001").Replace('\n', ' ').Split('\u0001'))
            sb.Append('\n').Append(Printing.Wrap(paragraph, HelpWidth, "")).Append('\n');
        sb.Append("\nOptions:\n");
        int width = Math.Min(30, all.Max(o => Left(o).Length));
        string indent = new(' ', width + 4);
        foreach (var o in all)
        {
            string left = "  " + Left(o);
            string line = left.Length > width + 2 ? left + "\n" + indent + o.Help : left.PadRight(width + 4) + o.Help;
            sb.Append(Printing.Wrap(line, HelpWidth, indent)).Append('\n');
        }
        sb.Append('\n').Append(Printing.Wrap($"Exit codes: {ExitCodesHelp}.", HelpWidth, "  ")).Append('\n');
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
