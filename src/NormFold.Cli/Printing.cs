using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Cli;

/// <summary>Console tables and JSON files: two views of the same records.</summary>
public static class Printing
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The model file and its data files, resolved (<see cref="NormFold.Onnx.OnnxModel.InputFiles"/>); just the
    /// model file when it cannot be loaded (the command itself will say why).</summary>
    public static Dictionary<string, string> FilesRead(string model)
    {
        try { using var m = NormFold.Onnx.OnnxModel.Load(model); return m.InputFiles(); }
        catch (Exception e) when (Cli.IsInputError(e)) { return new() { [NormFold.Onnx.PathGuard.Resolve(model)] = "the input model" }; }
    }

    public static string ToJson(object value) => JsonSerializer.Serialize(value, Json) + "\n";

    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows, int lastColumnMax = 100)
    {
        var all = rows.Select(r => r.Select((c, i) => i == r.Count - 1 && c.Length > lastColumnMax ? c[..(lastColumnMax - 1)] + "…" : c).ToList()).ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => r[i].Length))).ToArray();
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> cells)
        {
            for (int i = 0; i < cells.Count; i++)
            {
                sb.Append(i == cells.Count - 1 ? cells[i] : cells[i].PadRight(widths[i] + 2));
            }
            sb.Append('\n');
        }
        Line(headers);
        Line(widths.Select(w => new string('-', w)).ToList());
        foreach (var r in all) Line(r);
        return sb.ToString();
    }

    public static string Decisions(RewriteLog log)
    {
        if (log.Decisions.Count == 0) return "No BatchNormalization (or other candidate) in the model.\n";
        bool nested = log.Decisions.Any(d => d.Graph != "main");
        var headers = new List<string>();
        if (nested) headers.Add("Graph");
        headers.AddRange(["Node", "Op", "Outcome", "Rule", "Into", "Reason", "Detail"]);
        var rows = log.Decisions.Select(d =>
        {
            var row = new List<string>();
            if (nested) row.Add(d.Graph);
            row.AddRange([d.Anchor, d.AnchorOpType, OutcomeText(d.Outcome), d.Rule ?? "-", d.Target ?? "-", d.Reason?.ToString() ?? "-",
                d.Outcome == Outcome.Folded ? "" : d.Detail]);
            return (IReadOnlyList<string>)row;
        });
        return Table(headers, rows, 160);
    }

    public static string OutcomeText(Outcome o) => o switch
    {
        Outcome.Folded => "folded",
        Outcome.Replaced => "replaced",
        _ => "left",
    };

    public static string Summary(FoldResult result)
    {
        var bn = result.Log.Decisions.Where(d => d.AnchorOpType == "BatchNormalization").ToList();
        var other = result.Log.Decisions.Where(d => d.AnchorOpType != "BatchNormalization").ToList();
        int before = result.OpsBefore.Values.Sum(), after = result.OpsAfter.Values.Sum();
        string text = $"{bn.Count} BatchNormalization: {bn.Count(d => d.Outcome == Outcome.Folded)} folded, " +
                      $"{bn.Count(d => d.Outcome == Outcome.Replaced)} replaced by Mul+Add, {bn.Count(d => d.Outcome == Outcome.Left)} left.";
        if (other.Count > 0)
            text += $" {other.Count} other candidate(s): {other.Count(d => d.Outcome == Outcome.Replaced)} replaced, {other.Count(d => d.Outcome == Outcome.Left)} left.";
        return text + $" Nodes: {before} → {after}.";
    }

    public static string OpChanges(FoldResult result)
    {
        var keys = result.OpsBefore.Keys.Union(result.OpsAfter.Keys).OrderBy(k => k, StringComparer.Ordinal);
        var rows = keys.Select(k => (IReadOnlyList<string>)[k, result.OpsBefore.GetValueOrDefault(k).ToString(), result.OpsAfter.GetValueOrDefault(k).ToString()]);
        return Table(["Op", "Before", "After"], rows);
    }

    public static object FoldJson(string input, string? output, FoldResult result, CheckReport? check) => new
    {
        tool = "normfold",
        version = typeof(Folding).Assembly.GetName().Version?.ToString(3),
        input,
        output,
        summary = new
        {
            batchNormalizations = result.Log.Decisions.Count,
            folded = result.Log.Count(Outcome.Folded),
            replaced = result.Log.Count(Outcome.Replaced),
            left = result.Log.Count(Outcome.Left),
            nodesBefore = result.OpsBefore.Values.Sum(),
            nodesAfter = result.OpsAfter.Values.Sum(),
        },
        opsBefore = result.OpsBefore,
        opsAfter = result.OpsAfter,
        decisions = result.Log.Decisions,
        check = check is null ? null : CheckJson(check),
    };

    public static object CheckJson(CheckReport report) => new
    {
        passed = report.Passed,
        ortVersion = report.OrtVersion,
        inputs = report.Options.InputProvenance,
        seed = report.Options.Seed,
        iterations = report.Options.Iterations,
        ortLevel = report.Options.Level.ToString().ToLowerInvariant(),
        notes = report.Notes,
        outputs = report.Outputs,
        firstDrifting = report.FirstDrifting?.Name,
        weightAudit = report.Audit,
        intermediates = report.Intermediates,
    };

    static IReadOnlyList<string> Row(OutputComparison o) =>
    [
        o.Name, o.Passed ? "ok" : "FAIL", o.Shape, o.ElementType,
        Num(o.MaxAbs), Num(o.RelativeToMagnitude), Num(o.Cosine, "F6"), $"{Num(o.Tolerance.Atol)} / {Num(o.Tolerance.Rtol)}",
        o.Problem ?? (o.Passed ? "" : $"{o.FailedElements} of {o.Elements} elements beyond tolerance; worst at [{string.Join(",", o.WorstIndex)}]: {o.WorstActual:G9} vs {o.WorstReference:G9}"),
    ];

    static readonly string[] CheckHeaders = ["Tensor", "Result", "Shape", "Type", "Max abs", "Max abs / max|ref|", "Cosine", "atol / rtol", "Detail"];

    /// <summary>Outputs table, then the shared intermediates: all of them with <paramref name="everyTensor"/>, else a summary
    /// and the first that drifts.</summary>
    public static string Check(CheckReport report, bool everyTensor = false)
    {
        var sb = new StringBuilder();
        sb.Append(Table(CheckHeaders, report.Outputs.Select(Row), 140));
        var inner = report.Intermediates;
        if (everyTensor && inner.Count > 0)
        {
            sb.Append($"\nShared intermediate tensors, in the original's node order:\n");
            sb.Append(Table(CheckHeaders, inner.Select(Row), 140));
        }
        if (report.FirstDrifting is { } f)
        {
            int index = inner.ToList().IndexOf(f);
            sb.Append($"First intermediate to drift (of {inner.Count} both models name, in the original's node order): '{f.Name}' {f.Shape} {f.ElementType}: " +
                      $"{f.FailedElements} of {f.Elements} elements beyond tolerance; max abs {Num(f.MaxAbs)} ({Num(f.RelativeToMagnitude)} of max|ref|), " +
                      $"worst at [{string.Join(",", f.WorstIndex)}]: {f.WorstActual:G9} vs {f.WorstReference:G9}" +
                      (index > 0 ? $"; the {index} before it agree (last: '{inner[index - 1].Name}').\n" : ".\n"));
        }
        else if (inner.Count > 0)
            sb.Append($"All {inner.Count} intermediate tensors both models name agree within tolerance.\n");
        if (report.Audit is { } audit)
            sb.Append(audit.Passed
                ? $"Weight audit: {audit.Tensors} folded weight tensor(s), {audit.Elements} elements, all bit-identical to the exact fold (computed in double, rounded once).\n"
                : $"Weight audit FAILED: {audit.Inexact} of {audit.Elements} elements in {audit.Tensors} folded weight tensor(s) differ from the exact fold, by up to {Num(audit.MaxUlp)} ulp (worst: '{audit.WorstTensor}').\n");
        foreach (var n in report.Notes) sb.Append("note: ").Append(n).Append('\n');
        return sb.ToString();
    }

    /// <summary>Wraps each line of <paramref name="text"/> at spaces to <paramref name="width"/> columns; continuation lines
    /// start with <paramref name="indent"/>. A word longer than a line is cut.</summary>
    public static string Wrap(string text, int width, string indent)
    {
        var lines = new List<string>();
        foreach (var line in text.Split('\n'))
        {
            string rest = line, prefix = "";
            while (prefix.Length + rest.Length > width)
            {
                int room = width - prefix.Length;
                int lead = rest.Length - rest.TrimStart(' ').Length; // a line's own indent is no place to break
                int cut = rest.LastIndexOf(' ', room);
                if (cut <= lead) cut = room;
                lines.Add(prefix + rest[..cut].TrimEnd());
                rest = rest[cut..].TrimStart(' ');
                prefix = indent;
            }
            if (rest.Length > 0 || prefix.Length == 0) lines.Add(prefix + rest);
        }
        return string.Join('\n', lines);
    }

    public static string Num(double v, string format = "G3") =>
        double.IsPositiveInfinity(v) ? "inf" : double.IsNaN(v) ? "nan" : v.ToString(format, System.Globalization.CultureInfo.InvariantCulture);
}
