using System.Text;
using NormFold.Reports;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Cli;

/// <summary>Console text: tables that fit the terminal, summaries, numbers. Views of the decision log and the check.</summary>
internal static class Printing
{
    /// <summary>The model file and its data files, resolved (<see cref="NormFold.Onnx.OnnxModel.InputFiles"/>); just the
    /// model file when it cannot be loaded (the command itself will say why).</summary>
    public static Dictionary<string, string> FilesRead(string model)
    {
        try { using var m = NormFold.Onnx.OnnxModel.Load(model); return m.InputFiles(); }
        catch (Exception e) when (Cli.IsInputError(e)) { return new() { [NormFold.Onnx.PathGuard.Resolve(model)] = "the input model" }; }
    }

    /// <summary>A table fitted to <paramref name="width"/> columns: columns whose cells are all empty or "-" are left
    /// out; while the table is too wide the widest column narrows (down to 6), and cells wrap inside their column.</summary>
    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows, int width = 100)
    {
        const int gap = 2, narrowest = 6;
        var all = rows.ToList();
        var keep = Enumerable.Range(0, headers.Count).Where(i => all.Count == 0 || all.Any(r => r[i] is not ("" or "-"))).ToList();
        var head = keep.Select(i => headers[i]).ToList();
        var cells = all.Select(r => keep.Select(i => r[i]).ToList()).ToList();
        var widths = head.Select((h, i) => Math.Max(h.Length, cells.Count == 0 ? 0 : cells.Max(r => r[i].Length))).ToArray();
        // First narrow columns down to their longest unbreakable word (wrapping at spaces and '/'), widest first;
        // then, if still too wide, cut words too.
        var words = head.Select((h, i) => Math.Max(Math.Max(narrowest, LongestWord(h)), cells.Count == 0 ? 0 : cells.Max(r => LongestWord(r[i])))).ToArray();
        foreach (bool cutWords in new[] { false, true })
            while (widths.Sum() + gap * (widths.Length - 1) > width)
            {
                int j = -1;
                for (int i = 0; i < widths.Length; i++)
                    if (widths[i] > (cutWords ? narrowest : words[i]) && (j < 0 || widths[i] > widths[j])) j = i;
                if (j < 0) break;
                widths[j]--;
            }
        var sb = new StringBuilder();
        void Line(IReadOnlyList<string> row)
        {
            var wrapped = row.Select((c, i) => Wrap(c, widths[i], "").Split('\n')).ToList();
            int height = wrapped.Max(w => w.Length);
            for (int k = 0; k < height; k++)
            {
                var line = new StringBuilder();
                for (int i = 0; i < wrapped.Count; i++)
                    line.Append((k < wrapped[i].Length ? wrapped[i][k] : "").PadRight(i == wrapped.Count - 1 ? 0 : widths[i] + gap));
                sb.Append(line.ToString().TrimEnd()).Append('\n');
            }
        }
        Line(head);
        Line(widths.Select(w => new string('-', w)).ToList());
        foreach (var r in cells) Line(r);
        return sb.ToString();
    }

    /// <summary>One row per decision. The Op column only when the anchors differ in op type; Rule, Into, Reason and
    /// Detail blank where they carry nothing (a folded BN has no reason).</summary>
    public static string Decisions(RewriteLog log, int width = 100)
    {
        if (log.Decisions.Count == 0) return "No BatchNormalization (or other candidate) in the model.\n";
        bool nested = log.Decisions.Any(d => d.Graph != "main");
        bool ops = log.Decisions.Select(d => d.AnchorOpType).Distinct().Count() > 1;
        var headers = new List<string>();
        if (nested) headers.Add("Graph");
        headers.Add("Node");
        if (ops) headers.Add("Op");
        headers.AddRange(["Outcome", "Rule", "Into", "Reason", "Detail"]);
        var rows = log.Decisions.Select(d =>
        {
            var row = new List<string>();
            if (nested) row.Add(d.Graph);
            row.Add(d.Anchor);
            if (ops) row.Add(d.AnchorOpType);
            row.AddRange([OutcomeText(d.Outcome), d.Rule ?? "", d.Target ?? "", d.Reason?.ToString() ?? "",
                d.Outcome == Outcome.Folded ? "" : d.Detail]);
            return (IReadOnlyList<string>)row;
        });
        return Table(headers, rows, width);
    }

    /// <summary>The gate failures, one per line, wrapped to <paramref name="width"/>.</summary>
    public static string GateFailures(GateResults gates, int width = 100) =>
        string.Concat(gates.Failures.Select(f => Wrap($"  {f.Gate}: {f.Subject}: {f.Reason}", width, "      ") + "\n"));

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
            text += $" {other.Count} other candidate(s): {other.Count(d => d.Outcome == Outcome.Folded)} folded, " +
                    $"{other.Count(d => d.Outcome == Outcome.Replaced)} replaced, {other.Count(d => d.Outcome == Outcome.Left)} left.";
        return text + $" Nodes: {before} → {after}.";
    }

    public static string OpChanges(FoldResult result, int width = 100)
    {
        var keys = result.OpsBefore.Keys.Union(result.OpsAfter.Keys).OrderBy(k => k, StringComparer.Ordinal);
        var rows = keys.Select(k => (IReadOnlyList<string>)[k, result.OpsBefore.GetValueOrDefault(k).ToString(), result.OpsAfter.GetValueOrDefault(k).ToString()]);
        return Table(["Op", "Before", "After"], rows, width);
    }

    static IReadOnlyList<string> Row(OutputComparison o) =>
    [
        o.Name, o.Passed ? o.Amplified ? "amplified" : "ok" : "FAIL", o.Shape, o.ElementType,
        Num(o.MaxAbs), Num(o.RelativeToMagnitude), Num(o.Cosine, "F6"), Num(o.Tolerance.Atol), Num(o.Tolerance.Rtol),
    ];

    static readonly string[] CheckHeaders = ["Tensor", "Result", "Shape", "Type", "Max abs", "Max/max|ref|", "Cosine", "atol", "rtol"];

    /// <summary>A table of tensors, then one wrapped line per tensor that failed, saying how.</summary>
    static string TensorTable(IEnumerable<OutputComparison> tensors, int width)
    {
        var list = tensors.ToList();
        if (list.Count == 0) return ""; // nothing compared (e.g. nothing to check): no empty table
        var sb = new StringBuilder(Table(CheckHeaders, list.Select(Row), width));
        foreach (var o in list.Where(o => !o.Passed))
            sb.Append(Wrap($"  {o.Name}: " + (o.Problem ?? $"{o.FailedElements} of {o.Elements} elements beyond tolerance; worst at " +
                $"[{string.Join(",", o.WorstIndex)}]: {o.WorstActual:G9} vs {o.WorstReference:G9}"), width, "    ")).Append('\n');
        return sb.ToString();
    }

    /// <summary>Outputs table, then the shared intermediates: all of them with <paramref name="everyTensor"/>, else a summary
    /// and the first that drifts.</summary>
    /// <summary>Why a weight audit failed, in words. A record that could not be replayed counts as inexact but has no
    /// elements: it is named apart.</summary>
    public static string AuditFailure(long inexact, long elements, int tensors, double maxUlp, string? worst, IReadOnlyList<string> skipped)
    {
        long differ = inexact - skipped.Count;
        var parts = new List<string>();
        if (differ > 0)
            parts.Add($"{differ} of {elements} elements in {tensors} folded weight tensor(s) differ from the exact fold, by up to {Num(maxUlp)} ulp (worst: '{worst}')");
        if (skipped.Count > 0)
            parts.Add($"{skipped.Count} folded weight tensor(s) could not be replayed: {string.Join("; ", skipped)}");
        return string.Join("; ", parts);
    }

    public static string Check(CheckReport report, bool everyTensor = false, int width = 100)
    {
        var sb = new StringBuilder();
        sb.Append(TensorTable(report.Outputs, width));
        var inner = report.Intermediates;
        if (everyTensor && inner.Count > 0)
        {
            sb.Append($"\nShared intermediate tensors, in the original's node order:\n");
            sb.Append(TensorTable(inner, width));
        }
        if ((everyTensor || report.FirstReplayFailure != null) && report.Replays.Count > 0)
        {
            sb.Append($"\nTensors of the rewritten nodes recomputed from the original's own inputs (local replay):\n");
            sb.Append(TensorTable(report.Replays, width));
        }
        var text = new StringBuilder();
        if (report.FirstDrifting is { } f)
        {
            int index = inner.ToList().IndexOf(f);
            text.Append($"First intermediate to drift (of {inner.Count} both models name, in the original's node order): '{f.Name}' {f.Shape} {f.ElementType}: " +
                      (f.Problem ?? $"{f.FailedElements} of {f.Elements} elements beyond tolerance; max abs {Num(f.MaxAbs)} ({Num(f.RelativeToMagnitude)} of max|ref|), " +
                      $"worst at [{string.Join(",", f.WorstIndex)}]: {f.WorstActual:G9} vs {f.WorstReference:G9}") +
                      (index > 0 ? $"; the {index} before it agree (last: '{inner[index - 1].Name}').\n" : ".\n"));
        }
        else if (inner.Count > 0)
            text.Append(inner.Count(x => x.Amplified) is var amplified and > 0
                ? $"All {inner.Count} intermediate tensors both models name pass: {inner.Count - amplified} within tolerance, {amplified} beyond it by rounding the network amplifies (see the note).\n"
                : $"All {inner.Count} intermediate tensors both models name agree within tolerance.\n");
        if (report.FirstReplayFailure is { } r)
            text.Append($"Local replay FAILED in {report.Replays.Count(x => !x.Passed)} of {report.Replays.Count} tensor(s) the {report.ReplayedNodes} rewritten node(s) make, " +
                $"recomputed from the original's own inputs; first: '{r.Name}' {r.Shape} {r.ElementType}: " +
                (r.Problem ?? $"{r.FailedElements} of {r.Elements} elements beyond tolerance; max abs {Num(r.MaxAbs)} ({Num(r.RelativeToMagnitude)} of max|ref|), " +
                $"worst at [{string.Join(",", r.WorstIndex)}]: {r.WorstActual:G9} vs {r.WorstReference:G9}") + ".\n");
        else if (report.Replays.Count > 0 && report.Replays.MaxBy(x => x.RelativeToMagnitude) is { } w)
            text.Append($"Local replay: the {report.ReplayedNodes} rewritten node(s), recomputed from the original's own inputs, agree with it in all {report.Replays.Count} tensor(s) they make " +
                $"(worst '{w.Name}': {Num(w.RelativeToMagnitude)} of max|ref|; no channel drift).\n");
        if (report.Audit is { } audit)
            text.Append(audit.Passed
                ? $"Weight audit: {audit.Tensors} folded weight tensor(s), {audit.Elements} elements, all bit-identical to the exact fold (computed in double, rounded once).\n"
                : $"Weight audit FAILED: {AuditFailure(audit.Inexact, audit.Elements, audit.Tensors, audit.MaxUlp, audit.WorstTensor, audit.Skipped)}.\n");
        foreach (var n in report.Notes) text.Append("note: ").Append(n).Append('\n');
        return sb.Append(Wrap(text.ToString().TrimEnd('\n'), width, "  ")).Append(text.Length > 0 ? "\n" : "").ToString();
    }

    /// <summary>Wraps each line of <paramref name="text"/> to <paramref name="width"/> columns, at spaces or after a '/'
    /// (node names are paths); continuation lines start with <paramref name="indent"/>. A longer word is cut.</summary>
    public static string Wrap(string text, int width, string indent)
    {
        var lines = new List<string>();
        foreach (var line in text.Split('\n'))
        {
            string rest = line, prefix = "";
            while (prefix.Length + rest.Length > width)
            {
                int room = Math.Max(1, width - prefix.Length);
                int lead = rest.Length - rest.TrimStart(' ').Length; // a line's own indent is no place to break
                int cut = room;
                for (int i = room; i > lead; i--)
                    if (rest[i] == ' ' || rest[i - 1] == '/') { cut = i; break; }
                lines.Add(prefix + rest[..cut].TrimEnd());
                rest = rest[cut..].TrimStart(' ');
                prefix = indent;
            }
            if (rest.Length > 0 || prefix.Length == 0) lines.Add(prefix + rest);
        }
        return string.Join('\n', lines);
    }

    /// <summary>The longest piece of <paramref name="s"/> that <see cref="Wrap"/> cannot break.</summary>
    static int LongestWord(string s)
    {
        int longest = 0, run = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == ' ') { run = 0; continue; }
            run++;
            longest = Math.Max(longest, run);
            if (s[i] == '/') run = 0;
        }
        return longest;
    }

    /// <summary>What a passed check's one-line verdict adds when it excused tensors as amplified rounding (local
    /// replay): how many, the worst, and why; "" when it excused none.</summary>
    public static string AmplifiedClause(IEnumerable<(string Name, double Relative, bool Amplified)> tensors, int replayedNodes)
    {
        var amplified = tensors.Where(t => t.Amplified).ToList();
        if (amplified.Count == 0) return "";
        var worst = amplified.MaxBy(t => t.Relative);
        return $"; {amplified.Count} tensor(s) beyond the end-to-end tolerance (worst '{worst.Name}': {Num(worst.Relative)} of max|ref|) " +
               $"pass as rounding the network amplifies: each of the {replayedNodes} rewritten node(s) agrees on the original's own inputs (local replay)";
    }

    public static string AmplifiedClause(CheckReport r) =>
        AmplifiedClause(r.Outputs.Concat(r.Intermediates).Select(t => (t.Name, t.RelativeToMagnitude, t.Amplified)), r.ReplayedNodes);

    public static string AmplifiedClause(CheckResults c) =>
        AmplifiedClause(c.Outputs.Concat(c.Intermediates).Select(t => (t.Name, t.RelativeToMagnitude, t.Amplified)), c.ReplayedNodes);

    /// <summary>A tensor's result word: ok, amplified (passed by local replay) or FAIL.</summary>
    public static string ResultWord(bool passed, bool amplified) => passed ? amplified ? "amplified" : "ok" : "FAIL";

    public static string Num(double v, string format = "G3") =>
        double.IsPositiveInfinity(v) ? "inf" : double.IsNaN(v) ? "nan" : v.ToString(format, System.Globalization.CultureInfo.InvariantCulture);
}
