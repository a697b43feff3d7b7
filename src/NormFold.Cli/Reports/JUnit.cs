using System.Text;
using System.Xml;
using NormFold.Reports;
using NormFold.Rewriting;

namespace NormFold.Cli.Reports;

/// <summary>
/// JUnit XML as Jenkins, GitLab, Azure DevOps and GitHub test reporters read it: testsuites → testsuite → testcase,
/// with failure (the run's verdict: check, audit, gate) or error (invalid input, internal error) carrying the reason
/// lines, and skipped for a stage that did not run. One test case per stage (fold, check, audit) for one model, one per
/// model for a folder.
/// </summary>
internal static class JUnit
{
    /// <summary>A test case: its name, verdict (null = passed), the reason lines, and what it printed.</summary>
    sealed record Case(string ClassName, string Name, double Seconds, Verdict? Verdict, string? Output);

    sealed record Verdict(string Kind, string Type, string Message, string Text); // Kind: failure, error, skipped

    public static string Of(FoldReport r) => Write($"normfold {r.CommandLine?.ElementAtOrDefault(1) ?? "fold"} {r.Input}", StagesOf(r, "normfold"));

    public static string Of(CheckFileReport r) =>
        Write($"normfold check {r.Reference} {r.Candidate}", [CheckCase("normfold", r.Check, r.Gates), AuditCase("normfold", r.Check)]);

    public static string Of(FolderReport r) =>
        Write($"normfold fold {r.Input}", r.Models.Select(m => new Case("normfold.fold", Path.GetRelativePath(r.Input, m.Input), m.Seconds,
            m.ExitCode switch
            {
                ExitCodes.Success => null,
                ExitCodes.CheckFailed or ExitCodes.GateFailed => new Verdict("failure", m.ExitCode == ExitCodes.CheckFailed ? "check" : "gate", m.Error ?? "",
                    string.Join("\n", [m.Error ?? "", .. Reasons(m.Fold)])),
                _ => new Verdict("error", m.ExitCode == ExitCodes.InternalError ? "internal" : "invalid-input", m.Error ?? "", m.Error ?? ""),
            }, m.Fold is null ? null : Markdown.DecisionLines(m.Fold))).ToList());

    /// <summary>A run that failed before it had a result (invalid model or arguments, internal error).</summary>
    public static string Error(string command, int exitCode, string message) =>
        Write($"normfold {command}", [new Case("normfold", command, 0,
            new Verdict("error", exitCode == ExitCodes.InternalError ? "internal" : "invalid-input", message, message), null)]);

    static List<Case> StagesOf(FoldReport r, string cls)
    {
        var foldGate = r.Gates?.Failures.Where(f => f.Gate == Gates.RequireAllFoldedOption.Name).ToList() ?? [];
        var fold = new Case(cls, "fold", 0,
            foldGate.Count > 0 ? new Verdict("failure", "gate", $"{foldGate.Count} of {r.Decisions.Count(SkipReasons.IsFoldCandidate)} candidate(s) not folded (--require-all-folded)",
                string.Join("\n", foldGate.Select(f => $"{f.Subject}: {f.Reason}"))) : null,
            Markdown.DecisionLines(r));
        if (r.Check is null)
            return [fold, Skipped(cls, "check", "no equivalence check was asked for (--check)"), Skipped(cls, "audit", "no equivalence check was asked for (--check)")];
        return [fold, CheckCase(cls, r.Check, r.Gates), AuditCase(cls, r.Check)];
    }

    static Case Skipped(string cls, string name, string why) => new(cls, name, 0, new Verdict("skipped", "", why, ""), null);

    static Case CheckCase(string cls, CheckResults c, GateResults? gates)
    {
        var failing = c.Outputs.Concat(c.Intermediates).Concat(c.Replays ?? []).Where(t => !t.Passed).ToList();
        var driftGate = gates?.Failures.Where(f => f.Gate != Gates.RequireAllFoldedOption.Name).ToList() ?? [];
        Verdict? v = failing.Count > 0
            ? new Verdict("failure", "check", $"not equivalent: {failing.Count} tensor(s) beyond tolerance, first '{failing[0].Name}'",
                string.Join("\n", failing.Select(Describe)))
            : driftGate.Count > 0
                ? new Verdict("failure", "gate", $"{driftGate.Count} drift gate failure(s)", string.Join("\n", driftGate.Select(f => $"{f.Gate}: {f.Subject}: {f.Reason}")))
                : null;
        var output = new StringBuilder($"inputs: {c.Inputs}, {c.Iterations} iteration(s), ONNX Runtime {c.OrtVersion}, optimisation {c.OrtLevel}\n");
        if (failing.Count == 0 && Printing.AmplifiedClause(c) is { Length: > 0 } clause) output.Append("passed by local replay").Append(clause).Append('\n');
        foreach (var o in c.Outputs) output.Append(Describe(o)).Append('\n');
        foreach (var n in c.Notes) output.Append("note: ").Append(n).Append('\n');
        return new Case(cls, "check", 0, v, output.ToString());
    }

    static Case AuditCase(string cls, CheckResults c) => c.WeightAudit is not { } a
        ? Skipped(cls, "audit", "the weight audit did not run")
        : new Case(cls, "audit", 0, a.Passed ? null : new Verdict("failure", "audit",
            Printing.AuditFailure(a.Inexact, a.Elements, a.Tensors, a.MaxUlp, a.WorstTensor, a.Skipped), string.Join("\n", a.Skipped)),
            $"{a.Tensors} folded weight tensor(s), {a.Elements} elements checked bit for bit");

    static string Describe(TensorDrift t) =>
        $"{t.Name}: {Printing.ResultWord(t.Passed, t.Amplified)}: {t.Problem ?? $"max abs {Printing.Num(t.MaxAbs)}, {Printing.Num(t.RelativeToMagnitude)} of max|ref|, cosine {Printing.Num(t.Cosine, "F6")}, {t.FailedElements} of {t.Elements} beyond tolerance"}";

    static IEnumerable<string> Reasons(FoldReport? f) =>
        f is null ? [] : [.. (f.Gates?.Failures ?? []).Select(g => $"{g.Gate}: {g.Subject}: {g.Reason}"),
            .. f.Check is { } c ? c.Outputs.Concat(c.Intermediates).Concat(c.Replays ?? []).Where(t => !t.Passed).Take(5).Select(Describe) : []];

    static string Write(string suiteName, IReadOnlyList<Case> cases)
    {
        var sb = new StringBuilder();
        var settings = new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false), OmitXmlDeclaration = false };
        using (var w = XmlWriter.Create(new StringWriterUtf8(sb), settings))
        {
            int failures = cases.Count(c => c.Verdict?.Kind == "failure"), errors = cases.Count(c => c.Verdict?.Kind == "error");
            int skipped = cases.Count(c => c.Verdict?.Kind == "skipped");
            string time = Seconds(cases.Sum(c => c.Seconds));
            w.WriteStartElement("testsuites");
            Counts(w, "normfold", cases.Count, failures, errors, skipped, time);
            w.WriteStartElement("testsuite");
            Counts(w, Clean(suiteName), cases.Count, failures, errors, skipped, time);
            w.WriteAttributeString("timestamp", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss", System.Globalization.CultureInfo.InvariantCulture));
            foreach (var c in cases)
            {
                w.WriteStartElement("testcase");
                w.WriteAttributeString("classname", Clean(c.ClassName));
                w.WriteAttributeString("name", Clean(c.Name));
                w.WriteAttributeString("time", Seconds(c.Seconds));
                if (c.Verdict is { } v)
                {
                    w.WriteStartElement(v.Kind);
                    w.WriteAttributeString("message", Clean(v.Message));
                    if (v.Type.Length > 0) w.WriteAttributeString("type", v.Type);
                    if (v.Text.Length > 0) w.WriteString(Clean(v.Text));
                    w.WriteEndElement();
                }
                if (c.Output is { Length: > 0 } o) w.WriteElementString("system-out", Clean(o));
                w.WriteEndElement();
            }
            w.WriteEndElement();
            w.WriteEndElement();
        }
        return sb.Append('\n').ToString();
    }

    static void Counts(XmlWriter w, string name, int tests, int failures, int errors, int skipped, string time)
    {
        w.WriteAttributeString("name", name);
        w.WriteAttributeString("tests", tests.ToString(System.Globalization.CultureInfo.InvariantCulture));
        w.WriteAttributeString("failures", failures.ToString(System.Globalization.CultureInfo.InvariantCulture));
        w.WriteAttributeString("errors", errors.ToString(System.Globalization.CultureInfo.InvariantCulture));
        w.WriteAttributeString("skipped", skipped.ToString(System.Globalization.CultureInfo.InvariantCulture));
        w.WriteAttributeString("time", time);
    }

    static string Seconds(double s) => s.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Leaves out the characters XML 1.0 cannot carry (control characters, lone surrogates).</summary>
    public static string Clean(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { sb.Append(c).Append(s[++i]); continue; }
            if (c is '\t' or '\n' or '\r' || (c >= 0x20 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD)) sb.Append(c);
            else sb.Append('?');
        }
        return sb.ToString();
    }

    /// <summary>A StringWriter that declares UTF-8 (the XML declaration says what the file will be).</summary>
    sealed class StringWriterUtf8(StringBuilder sb) : StringWriter(sb)
    {
        public override Encoding Encoding => new UTF8Encoding(false);
    }
}
