using System.Text;
using NormFold.Reports;
using NormFold.Rewriting;

namespace NormFold.Cli.Reports;

/// <summary>
/// One self-contained HTML page (inline style and SVG, no script, no URL): the verdict, the decision table with reasons,
/// op counts before and after, per-output statistics, the drift along the network, an error histogram per output, the
/// per-channel findings, the gates. Written as well-formed XML, so tests can parse it.
/// </summary>
internal static class Html
{
    public static string Encode(string s) => System.Net.WebUtility.HtmlEncode(JUnit.Clean(s));

    public static string Of(FoldReport r)
    {
        var sb = Start($"NormFold {r.CommandLine?.ElementAtOrDefault(1) ?? "fold"}: {Path.GetFileName(r.Input)}");
        Header(sb, $"NormFold {r.CommandLine?.ElementAtOrDefault(1) ?? "fold"}", r.Input, r.Output, r.ExitCode, r.Version, r.CommandLine);
        FoldBody(sb, r, "");
        return End(sb);
    }

    public static string Of(CheckFileReport r)
    {
        var sb = Start($"NormFold check: {Path.GetFileName(r.Reference)} vs {Path.GetFileName(r.Candidate)}");
        Header(sb, "NormFold check", r.Reference, r.Candidate, r.ExitCode, r.Version, r.CommandLine, "candidate");
        CheckBody(sb, r.Check, "");
        GatesBody(sb, r.Gates);
        return End(sb);
    }

    public static string Of(FolderReport r)
    {
        var sb = Start($"NormFold fold: {r.Input}");
        Header(sb, "NormFold fold (folder)", r.Input, r.Output, r.ExitCode, r.Version, r.CommandLine);
        var t = r.Totals;
        sb.Append($"<p class=\"summary\">{t.Models} model(s) in {r.Seconds:F1} s with {r.Jobs} job(s): <b>{t.Written} written</b>, {t.Failed} failed " +
                  $"({t.ChecksFailed} check, {t.GatesFailed} gate, {t.InvalidInputs} invalid input, {t.InternalErrors} internal error). " +
                  $"{t.BatchNormalizations} BatchNormalization: {t.Folded} folded, {t.Replaced} replaced, {t.Left} left. Nodes: {t.NodesBefore} → {t.NodesAfter}.</p>");
        sb.Append("<table><thead><tr><th>Model</th><th>Result</th><th class=\"n\">Folded</th><th class=\"n\">Replaced</th><th class=\"n\">Left</th>" +
                  "<th class=\"n\">Max drift</th><th class=\"n\">Min cosine</th><th>First drift</th><th>Error</th></tr></thead><tbody>");
        int k = 0;
        foreach (var m in r.Models)
        {
            string id = $"m{k++}";
            string name = Path.GetRelativePath(r.Input, m.Input);
            sb.Append($"<tr class=\"{(m.ExitCode == 0 ? "ok" : "bad")}\"><td><a href=\"#{id}\">{Encode(name)}</a></td><td>{Encode(Commands.BatchFold.ResultText(m.ExitCode))}</td>" +
                      $"<td class=\"n\">{m.Fold?.Summary.Folded.ToString() ?? "-"}</td><td class=\"n\">{m.Fold?.Summary.Replaced.ToString() ?? "-"}</td><td class=\"n\">{m.Fold?.Summary.Left.ToString() ?? "-"}</td>" +
                      $"<td class=\"n\">{(m.Drift is { } d ? Encode(Printing.Num(d.MaxRelativeToMagnitude)) : "-")}</td><td class=\"n\">{(m.Drift is { } d2 ? Encode(Printing.Num(d2.MinCosine, "F6")) : "-")}</td>" +
                      $"<td>{Encode(m.Drift?.FirstDrifting ?? "")}</td><td>{Encode(m.Error ?? "")}</td></tr>");
        }
        sb.Append("</tbody></table>");
        k = 0;
        foreach (var m in r.Models)
        {
            string id = $"m{k++}";
            sb.Append($"<details id=\"{id}\" class=\"model\"{(m.ExitCode == 0 ? "" : " open=\"open\"")}><summary>{Encode(Path.GetRelativePath(r.Input, m.Input))} — {Encode(Commands.BatchFold.ResultText(m.ExitCode))}</summary>");
            if (m.Error is { } e) sb.Append($"<p class=\"error\">{Encode(e)}</p>");
            if (m.Fold is { } f) FoldBody(sb, f, id + "-");
            sb.Append("</details>");
        }
        return End(sb);
    }

    static void FoldBody(StringBuilder sb, FoldReport r, string idPrefix)
    {
        var s = r.Summary;
        sb.Append($"<p class=\"summary\">{s.BatchNormalizations} BatchNormalization{(s.OtherCandidates > 0 ? $" and {s.OtherCandidates} other candidate(s)" : "")}: " +
                  $"<b>{s.Folded} folded</b>, {s.Replaced} replaced, {s.Left} left. Nodes: {s.NodesBefore} → {s.NodesAfter}.</p>");
        sb.Append("<h2>Decisions</h2>");
        if (r.Decisions.Count == 0) sb.Append("<p>No BatchNormalization (or other candidate) in the model.</p>");
        else
        {
            // As in the terminal: the Op column only when anchors differ in op type, Reason and Detail only when some
            // candidate was not folded.
            bool nested = r.Decisions.Any(d => d.Graph != "main");
            bool ops = r.Decisions.Select(d => d.AnchorOpType).Distinct().Count() > 1;
            bool reasons = r.Decisions.Any(d => d.Outcome != Outcome.Folded);
            sb.Append("<table class=\"decisions\"><thead><tr>").Append(nested ? "<th>Graph</th>" : "").Append("<th>Node</th>")
              .Append(ops ? "<th>Op</th>" : "").Append("<th>Outcome</th><th>Rule</th><th>Into</th>").Append(reasons ? "<th>Reason</th><th>Detail</th>" : "")
              .Append("</tr></thead><tbody>");
            foreach (var d in r.Decisions)
                sb.Append($"<tr class=\"{d.Outcome.ToString().ToLowerInvariant()}\">").Append(nested ? $"<td>{Encode(d.Graph)}</td>" : "")
                  .Append($"<td><code>{Encode(d.Anchor)}</code></td>").Append(ops ? $"<td>{Encode(d.AnchorOpType)}</td>" : "")
                  .Append($"<td>{Printing.OutcomeText(d.Outcome)}</td><td>{Encode(d.Rule ?? "")}</td><td>{Encode(d.Target ?? "")}</td>")
                  .Append(reasons ? $"<td>{Encode(d.Reason?.ToString() ?? "")}</td><td>{(d.Outcome == Outcome.Folded ? "" : Encode(d.Detail))}</td>" : "")
                  .Append("</tr>");
            sb.Append("</tbody></table>");
        }
        sb.Append("<h2>Op counts</h2><table class=\"ops\"><thead><tr><th>Op</th><th class=\"n\">Before</th><th class=\"n\">After</th><th class=\"n\">Change</th></tr></thead><tbody>");
        foreach (var op in r.OpsBefore.Keys.Union(r.OpsAfter.Keys).Order(StringComparer.Ordinal))
        {
            int b = r.OpsBefore.GetValueOrDefault(op), a = r.OpsAfter.GetValueOrDefault(op);
            sb.Append($"<tr><td>{Encode(op)}</td><td class=\"n\">{b}</td><td class=\"n\">{a}</td><td class=\"n\">{(a == b ? "" : (a - b).ToString("+0;−0"))}</td></tr>");
        }
        sb.Append($"<tr class=\"total\"><td>all</td><td class=\"n\">{s.NodesBefore}</td><td class=\"n\">{s.NodesAfter}</td><td class=\"n\">{(s.NodesAfter - s.NodesBefore).ToString("+0;−0;0")}</td></tr></tbody></table>");
        if (r.Check is { } c) CheckBody(sb, c, idPrefix);
        GatesBody(sb, r.Gates);
    }

    static void CheckBody(StringBuilder sb, CheckResults c, string idPrefix)
    {
        sb.Append($"<h2>Equivalence check: <span class=\"{(c.Passed ? "ok" : "bad")}\">{(c.Passed ? "passed" : "FAILED")}</span></h2>");
        sb.Append($"<p>{Encode(c.Inputs)}, {c.Iterations} iteration(s), ONNX Runtime {Encode(c.OrtVersion)}, {(c.OrtLevel == "disable" ? "graph optimisations disabled" : "graph optimisation level " + Encode(c.OrtLevel))}.</p>");
        string Detail(TensorDrift o) => o.Problem ?? (o.Passed ? "" : $"{o.FailedElements} of {o.Elements} elements beyond tolerance; worst at [{string.Join(",", o.WorstIndex)}]");
        bool details = c.Outputs.Any(o => Detail(o).Length > 0);
        sb.Append("<h3>Outputs</h3><table class=\"stats\"><thead><tr><th>Output</th><th>Result</th><th>Shape</th><th>Type</th><th class=\"n\">Max abs</th>" +
                  "<th class=\"n\">Mean abs</th><th class=\"n\">p99 abs</th><th class=\"n\">Max abs / max|ref|</th><th class=\"n\">Cosine</th>" +
                  "<th class=\"n\">atol / rtol</th><th class=\"n\">Min atol</th>" + (details ? "<th>Detail</th>" : "") + "</tr></thead><tbody>");
        foreach (var o in c.Outputs)
            sb.Append($"<tr class=\"{(o.Passed ? "ok" : "bad")}\"><td><code>{Encode(o.Name)}</code></td><td>{Printing.ResultWord(o.Passed, o.Amplified)}</td><td>{Encode(o.Shape)}</td><td>{Encode(o.ElementType)}</td>" +
                      $"<td class=\"n\">{N(o.MaxAbs)}</td><td class=\"n\">{N(o.MeanAbs)}</td><td class=\"n\">{N(o.P99Abs)}</td><td class=\"n\">{N(o.RelativeToMagnitude)}</td>" +
                      $"<td class=\"n\">{Encode(Printing.Num(o.Cosine, "F6"))}</td><td class=\"n\">{N(o.Tolerance.Atol)} / {N(o.Tolerance.Rtol)}</td><td class=\"n\">{N(o.MinAtol)}</td>" +
                      (details ? $"<td>{Encode(Detail(o))}</td>" : "") + "</tr>");
        sb.Append("</tbody></table>");

        var along = c.Intermediates.Concat(c.Outputs).ToList();
        string? first = c.FirstDrifting ?? c.Outputs.FirstOrDefault(o => !o.Passed)?.Name;
        sb.Append("<h3>Drift along the network</h3>");
        sb.Append(c.Intermediates.Count == 0
            ? "<p class=\"note\">Outputs only (no intermediate tensor was compared).</p>"
            : first is null
                ? Printing.AmplifiedClause(c) is { Length: > 0 } clause
                    ? $"<p class=\"note\">All {c.Intermediates.Count} shared intermediate tensors and {c.Outputs.Count} output(s) pass, {c.Intermediates.Concat(c.Outputs).Count(t => t.Amplified)} of them only by local replay{Encode(clause)}.</p>"
                    : $"<p>All {c.Intermediates.Count} shared intermediate tensors and {c.Outputs.Count} output(s) agree within tolerance.</p>"
                : $"<p class=\"bad\">First tensor to drift: <code>{Encode(first)}</code>.</p>");
        sb.Append($"<figure id=\"{idPrefix}drift\">").Append(Svg.DriftChart(along, first)).Append("</figure>");

        var histograms = c.Outputs.Where(o => o.Histogram is not null).ToList();
        if (histograms.Count > 0)
        {
            sb.Append("<h3>Error histogram per output</h3><div class=\"histograms\">");
            foreach (var o in histograms) sb.Append("<figure>").Append(Svg.Histogram(o.Name, o.Histogram!)).Append("</figure>");
            sb.Append("</div>");
        }
        if (c.ChannelFindings is { Count: > 0 } findings)
        {
            sb.Append("<h3>Per-channel findings</h3><table class=\"channels\"><thead><tr><th>Tensor</th><th class=\"n\">Axis</th><th class=\"n\">Channel</th>" +
                      "<th class=\"n\">Max abs</th><th class=\"n\">Max abs / max|ref|</th><th>Detail</th></tr></thead><tbody>");
            foreach (var f in findings)
                sb.Append($"<tr><td><code>{Encode(f.Tensor)}</code></td><td class=\"n\">{f.Axis}</td><td class=\"n\">{f.Channel}</td><td class=\"n\">{N(f.MaxAbs)}</td>" +
                          $"<td class=\"n\">{N(f.RelativeToMagnitude)}</td><td>{Encode(f.Detail ?? "")}</td></tr>");
            sb.Append("</tbody></table>");
        }
        if (c.WeightAudit is { } a)
            sb.Append(a.Passed
                ? $"<p>Weight audit: {a.Tensors} folded weight tensor(s), {a.Elements} elements, all bit-identical to the exact fold (double, rounded once).</p>"
                : $"<p class=\"bad\">Weight audit FAILED: {Encode(Printing.AuditFailure(a.Inexact, a.Elements, a.Tensors, a.MaxUlp, a.WorstTensor, a.Skipped))}.</p>");
        if (c.Notes.Count > 0)
        {
            sb.Append("<ul class=\"notes\">");
            foreach (var n in c.Notes) sb.Append($"<li>{Encode(n)}</li>");
            sb.Append("</ul>");
        }
    }

    static void GatesBody(StringBuilder sb, GateResults? g)
    {
        if (g is null) return;
        sb.Append($"<h2>Gates: <span class=\"{(g.Passed ? "ok" : "bad")}\">{(g.Passed ? "passed" : $"{g.Failures.Count} failure(s)")}</span></h2>");
        sb.Append($"<p>{Encode(string.Join(", ", g.Gates))}</p>");
        if (g.Failures.Count == 0) return;
        sb.Append("<table class=\"gates\"><thead><tr><th>Gate</th><th>What</th><th>Why</th></tr></thead><tbody>");
        foreach (var f in g.Failures) sb.Append($"<tr class=\"bad\"><td>{Encode(f.Gate)}</td><td>{Encode(f.Subject)}</td><td>{Encode(f.Reason)}</td></tr>");
        sb.Append("</tbody></table>");
    }

    static string N(double v) => Encode(Printing.Num(v));

    static void Header(StringBuilder sb, string title, string input, string? output, int? exit, string? version, IReadOnlyList<string>? commandLine, string outputLabel = "output")
    {
        string verdict = exit switch
        {
            null or 0 => "passed",
            ExitCodes.CheckFailed => "check failed (exit 2)",
            ExitCodes.GateFailed => "gate failed (exit 4)",
            ExitCodes.InvalidInput => "invalid input (exit 3)",
            _ => $"exit {exit}",
        };
        sb.Append($"<header><h1>{Encode(title)} <span class=\"badge {(exit is null or 0 ? "ok" : "bad")}\">{Encode(verdict)}</span></h1>");
        sb.Append($"<dl><dt>input</dt><dd><code>{Encode(input)}</code></dd>");
        if (output is not null) sb.Append($"<dt>{outputLabel}</dt><dd><code>{Encode(output)}</code></dd>");
        if (commandLine is not null) sb.Append($"<dt>command</dt><dd><code>{Encode(string.Join(" ", commandLine.Select(Quote)))}</code></dd>");
        sb.Append($"<dt>tool</dt><dd>normfold {Encode(version ?? "?")}</dd></dl></header><main>");
    }

    static string Quote(string a) => a.Length > 0 && a.All(ch => char.IsLetterOrDigit(ch) || "-_./=:,+@%".Contains(ch)) ? a : "'" + a.Replace("'", "'\\''") + "'";

    static StringBuilder Start(string title) => new StringBuilder()
        .Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>")
        .Append($"<title>{Encode(title)}</title><style>{Style}</style></head><body>");

    static string End(StringBuilder sb) => sb.Append("</main><footer>Written by normfold. Self-contained: no scripts, no external resources.</footer></body></html>\n").ToString();

    const string Style =
        "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:16px 24px;color:#1f2328;background:#fff}" +
        "h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}" +
        "code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}" +
        "dt{color:#59636e}dd{margin:0;word-break:break-all}table{border-collapse:collapse;margin:6px 0;font-size:13px}" +
        "th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}" +
        "tr.left td,tr.replaced td{background:#fff8c5}tr.bad td{background:#ffebe9}tr.total td{font-weight:600}" +
        "span.badge{font-size:13px;padding:2px 10px;border-radius:12px;vertical-align:middle;color:#fff}span.badge.ok{background:#1a7f37;color:#fff}span.badge.bad{background:#cf222e;color:#fff}" +
        "span.ok{color:#1a7f37}span.bad,p.bad,p.error{color:#cf222e}.note{color:#59636e}figure{margin:8px 0}" +
        "svg.chart{width:100%;height:auto;background:#fff}svg.drift{max-width:920px}svg.histogram{width:440px;max-width:100%}.histograms{display:flex;flex-wrap:wrap;gap:12px}" +
        ".plot{fill:#fbfcfd;stroke:#d0d7de}.grid{stroke:#e6e9ec}.tick,.count{font-size:10px;fill:#59636e}.axis,.legend text{font-size:11px;fill:#1f2328}" +
        ".drift-line{fill:none;stroke:#0969da;stroke-width:1.2}.tolerance{fill:none;stroke:#cf222e;stroke-dasharray:5 4;stroke-width:1}" +
        ".point{fill:#0969da}.point.exact{fill:#fff;stroke:#0969da}.point.fail{fill:#cf222e}.first-failure{fill:none;stroke:#cf222e;stroke-width:2}" +
        ".label.fail{font-size:12px;font-weight:600;fill:#cf222e}.bar{fill:#0969da}.bar.exact{fill:#1a7f37}.bar.bad{fill:#cf222e}" +
        "details.model{margin:10px 0;border:1px solid #d0d7de;border-radius:6px;padding:6px 12px}details.model>summary{cursor:pointer;font-weight:600}" +
        "footer{margin-top:32px;color:#59636e;font-size:12px}";
}
