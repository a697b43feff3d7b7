namespace NormFold.Cli;

/// <summary>An option a command accepts: its name, whether it takes a value, and its help line. <paramref name="Writes"/>
/// marks an option naming a report file ("-" = stdout), and says what it writes ("JSON report").</summary>
internal sealed record OptionSpec(string Name, string? ValueName, string Help, bool Repeatable = false, string? Alias = null, string? Writes = null);

/// <summary>
/// Parsed arguments of one command. Options may be written "--name value" or "--name=value"; anything not
/// declared is an error naming the option, never silently ignored.
/// </summary>
internal sealed class ParsedArgs
{
    readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    public List<string> Positionals { get; } = [];

    public static ParsedArgs Parse(string command, IReadOnlyList<string> args, IReadOnlyList<OptionSpec> specs)
    {
        var parsed = new ParsedArgs();
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a == "--") { parsed.Positionals.AddRange(args.Skip(i + 1)); break; }
            if (!a.StartsWith('-') || a == "-") { parsed.Positionals.Add(a); continue; }
            string name = a;
            string? inline = null;
            int eq = a.IndexOf('=');
            if (a.StartsWith("--") && eq > 0) { name = a[..eq]; inline = a[(eq + 1)..]; }
            var spec = specs.FirstOrDefault(s => s.Name == name || s.Alias == name)
                ?? throw new InvalidUsageException($"{command}: unknown option '{name}' (see 'normfold {command} --help')");
            string value;
            if (spec.ValueName is null)
            {
                if (inline != null) throw new InvalidUsageException($"{command}: option '{spec.Name}' takes no value");
                value = "true";
            }
            else if (inline != null) value = inline;
            else if (i + 1 < args.Count && !specs.Any(s => s.Name == args[i + 1] || s.Alias == args[i + 1])) value = args[++i];
            else throw new InvalidUsageException($"{command}: option '{spec.Name}' needs a value ({spec.ValueName})");
            if (!parsed._values.TryGetValue(spec.Name, out var list)) parsed._values[spec.Name] = list = [];
            if (list.Count > 0 && !spec.Repeatable) throw new InvalidUsageException($"{command}: option '{spec.Name}' given twice");
            list.Add(value);
        }
        return parsed;
    }

    public bool Has(string name) => _values.ContainsKey(name);
    public string? Value(string name) => _values.TryGetValue(name, out var l) ? l[^1] : null;
    public IReadOnlyList<string> Values(string name) => _values.TryGetValue(name, out var l) ? l : [];

    public int Int(string command, string name, int defaultValue, int min = int.MinValue)
    {
        string? v = Value(name);
        if (v is null) return defaultValue;
        if (!int.TryParse(v, out int n) || n < min)
            throw new InvalidUsageException($"{command}: {name} must be an integer{(min > int.MinValue ? $" ≥ {min}" : "")}, got '{v}'");
        return n;
    }
}
