using System.Text;
using NormFold.Reports;
using NormFold.Rewriting;

namespace NormFold.Cli.Reports;

/// <summary>A Markdown summary for a CI job's summary page (e.g. appended to $GITHUB_STEP_SUMMARY): the verdict, the
/// counts, every candidate not folded with its reason, the outputs' drift, the gates.</summary>
internal static class Markdown
{
    public static string Of(FoldReport r)
    {
        var sb = new StringBuilder();
        string command = r.CommandLine?.ElementAtOrDefault(1) ?? "fold";
        sb.Append($"## NormFold {command}: `{Code(r.Input)}` — {Verdict(r.ExitCode)}\n\n");
        FoldBody(sb, r);
        return sb.ToString();
    }

    public static string Of(CheckFileReport r)
    {
        var sb = new StringBuilder($"## NormFold check: `{Code(r.Reference)}` vs `{Code(r.Candidate)}` — {Verdict(r.ExitCode)}\n\n");
        CheckBody(sb, r.Check);
        GatesBody(sb, r.Gates);
        return sb.ToString();
    }

    public static string Of(FolderReport r)
    {
        var t = r.Totals;
        var sb = new StringBuilder($"## NormFold fold `{Code(r.Input)}` → `{Code(r.Output)}` — {Verdict(r.ExitCode)}\n\n");
        sb.Append($"{t.Models} model(s): {t.Written} written, {t.Failed} failed ({t.ChecksFailed} check, {t.GatesFailed} gate, {t.InvalidInputs} invalid, {t.InternalErrors} internal). ");
        sb.Append($"{t.BatchNormalizations} BatchNormalization: {t.Folded} folded, {t.Replaced} replaced, {t.Left} left. Nodes: {t.NodesBefore} → {t.NodesAfter}.\n\n");
        sb.Append("| Model | Result | Folded | Replaced | Left | Max drift | Detail |\n| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
        foreach (var m in r.Models)
            sb.Append($"| `{Code(Path.GetRelativePath(r.Input, m.Input))}` | {BatchResult(m.ExitCode)} | {m.Fold?.Summary.Folded.ToString() ?? "-"} | " +
                      $"{m.Fold?.Summary.Replaced.ToString() ?? "-"} | {m.Fold?.Summary.Left.ToString() ?? "-"} | " +
                      $"{(m.Drift is { } d ? Printing.Num(d.MaxRelativeToMagnitude) : "-")} | {Cell(m.Error ?? "")} |\n");
        var notFolded = r.Models.Where(m => m.Fold is not null && m.Fold.Decisions.Any(d => d.Outcome != Outcome.Folded)).ToList();
        if (notFolded.Count > 0)
        {
            sb.Append("\n### Not folded\n\n| Model | Node | Outcome | Reason | Detail |\n| --- | --- | --- | --- | --- |\n");
            foreach (var m in notFolded)
                foreach (var d in m.Fold!.Decisions.Where(d => d.Outcome != Outcome.Folded))
                    sb.Append($"| `{Code(Path.GetRelativePath(r.Input, m.Input))}` | `{Code(d.Anchor)}` | {Printing.OutcomeText(d.Outcome)} | {d.Reason} | {Cell(d.Detail)} |\n");
        }
        return sb.ToString();
    }

    /// <summary>A run that failed before it had a result.</summary>
    public static string Error(string command, int exitCode, string message) =>
        $"## NormFold {command} — {Verdict(exitCode)}\n\n{Cell(message)}\n";

    static void FoldBody(StringBuilder sb, FoldReport r)
    {
        var s = r.Summary;
        sb.Append($"{s.BatchNormalizations} BatchNormalization{(s.OtherCandidates > 0 ? $" and {s.OtherCandidates} other candidate(s)" : "")}: " +
                  $"**{s.Folded} folded**, {s.Replaced} replaced, {s.Left} left. Nodes: {s.NodesBefore} → {s.NodesAfter}." +
                  (r.Output is null ? "" : $" Wrote `{Code(r.Output)}`.") + "\n\n");
        var notFolded = r.Decisions.Where(d => d.Outcome != Outcome.Folded).ToList();
        if (notFolded.Count > 0)
        {
            sb.Append("### Not folded\n\n| Node | Op | Outcome | Reason | Detail |\n| --- | --- | --- | --- | --- |\n");
            foreach (var d in notFolded)
                sb.Append($"| `{Code(d.Anchor)}` | {d.AnchorOpType} | {Printing.OutcomeText(d.Outcome)} | {d.Reason} | {Cell(d.Detail)} |\n");
            sb.Append('\n');
        }
        if (r.Check is { } c) CheckBody(sb, c);
        GatesBody(sb, r.Gates);
    }

    static void CheckBody(StringBuilder sb, CheckResults c)
    {
        sb.Append($"### Equivalence check: {(c.Passed ? "passed" : "**FAILED**")}\n\n");
        sb.Append($"{Cell(c.Inputs)}, {c.Iterations} iteration(s), ONNX Runtime {c.OrtVersion}, {(c.OrtLevel == "disable" ? "graph optimisations disabled" : "graph optimisation level " + c.OrtLevel)}.\n\n");
        sb.Append("| Output | Result | Max abs | Max abs / max\\|ref\\| | Cosine | Detail |\n| --- | --- | ---: | ---: | ---: | --- |\n");
        foreach (var o in c.Outputs)
            sb.Append($"| `{Code(o.Name)}` | {(o.Passed ? Printing.ResultWord(true, o.Amplified) : "**FAIL**")} | {Printing.Num(o.MaxAbs)} | {Printing.Num(o.RelativeToMagnitude)} | {Printing.Num(o.Cosine, "F6")} | {Cell(o.Problem ?? "")} |\n");
        sb.Append('\n');
        if (c.FirstDrifting is { } f) sb.Append($"First intermediate to drift: `{Code(f)}`.\n\n");
        else if (c.Intermediates.Count(t => t.Amplified) is var amplified and > 0)
            sb.Append($"All {c.Intermediates.Count} shared intermediate tensors pass: {c.Intermediates.Count - amplified} within tolerance, {amplified} beyond it as amplified rounding.\n\n");
        else if (c.Intermediates.Count > 0) sb.Append($"All {c.Intermediates.Count} shared intermediate tensors agree within tolerance.\n\n");
        if (Printing.AmplifiedClause(c) is { Length: > 0 } clause) sb.Append($"**Passed by local replay**{Cell(clause)}.\n\n");
        if (c.WeightAudit is { } a)
            sb.Append(a.Passed ? $"Weight audit: {a.Tensors} folded tensor(s), {a.Elements} elements, bit-identical to the exact fold.\n\n"
                : $"Weight audit **FAILED**: {Cell(Printing.AuditFailure(a.Inexact, a.Elements, a.Tensors, a.MaxUlp, a.WorstTensor, a.Skipped))}.\n\n");
    }

    static void GatesBody(StringBuilder sb, GateResults? g)
    {
        if (g is null) return;
        sb.Append($"### Gates ({string.Join(", ", g.Gates.Select(x => $"`{x}`"))}): {(g.Passed ? "passed" : $"**{g.Failures.Count} failure(s)**")}\n\n");
        foreach (var f in g.Failures) sb.Append($"- `{f.Gate}` {Cell(f.Subject)}: {Cell(f.Reason)}\n");
        if (g.Failures.Count > 0) sb.Append('\n');
    }

    /// <summary>The decisions as plain lines (JUnit's system-out).</summary>
    public static string DecisionLines(FoldReport r) =>
        string.Concat(r.Decisions.Select(d => $"{d.Anchor} ({d.AnchorOpType}): {Printing.OutcomeText(d.Outcome)}" +
            (d.Target is null ? "" : $" into {d.Target}") + (d.Rule is null ? "" : $" by {d.Rule}") +
            (d.Reason is null ? "" : $"; {d.Reason}: {d.Detail}") + "\n"));

    static string Verdict(int? exit) => exit switch
    {
        null or ExitCodes.Success => "✅ passed",
        ExitCodes.CheckFailed => "❌ check failed (exit 2)",
        ExitCodes.GateFailed => "❌ gate failed (exit 4)",
        ExitCodes.InvalidInput => "❌ invalid input (exit 3)",
        _ => $"❌ exit {exit}",
    };

    static string BatchResult(int exit) => exit == ExitCodes.Success ? "✅ ok" : "❌ " + Commands.BatchFold.ResultText(exit);

    /// <summary>Text safe inside a table cell: pipes escaped, newlines as spaces.</summary>
    static string Cell(string s) => s.Replace("|", "\\|").Replace("\r", "").Replace('\n', ' ');

    /// <summary>Text safe inside `code`: backticks replaced.</summary>
    static string Code(string s) => s.Replace('`', '\'').Replace('\n', ' ');
}
