using System.Globalization;
using System.Text;
using NormFold.Reports;

namespace NormFold.Cli.Reports;

/// <summary>Charts as inline SVG, drawn here (no script, no library): the drift along the network and an error
/// histogram per output.</summary>
internal static class Svg
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static string F(double v) => v.ToString("0.##", Inv);
    static string E(string s) => Html.Encode(s);

    /// <summary>
    /// Relative error (max |a − r| / max|r|) of each compared tensor in the original's node order, on a log scale, with
    /// each tensor's tolerance dashed; failures red, the first failure ringed and named. A tensor that matches exactly
    /// sits on the bottom line, hollow.
    /// </summary>
    public static string DriftChart(IReadOnlyList<TensorDrift> tensors, string? firstFailure)
    {
        const double w = 920, h = 300, left = 64, right = 16, top = 28, bottom = 46;
        double pw = w - left - right, ph = h - top - bottom;
        var values = tensors.Select(t => t.RelativeToMagnitude).ToList();
        var tolerances = tensors.Select(t => t.ReferenceMagnitude > 0 ? t.Tolerance.Atol / t.ReferenceMagnitude : t.Tolerance.Atol).ToList();
        var positive = values.Concat(tolerances).Where(v => v > 0 && double.IsFinite(v)).DefaultIfEmpty(1e-9).ToList();
        int lo = Math.Max(-16, (int)Math.Floor(Math.Log10(positive.Min())) - 1);
        int hi = Math.Max(lo + 2, (int)Math.Ceiling(Math.Log10(Math.Max(positive.Max(), 1e-300))));
        double X(int i) => left + (tensors.Count == 1 ? pw / 2 : pw * i / (tensors.Count - 1));
        double Y(double v) => !double.IsFinite(v) ? top : v <= 0 ? top + ph : top + ph * (hi - Math.Clamp(Math.Log10(v), lo, hi)) / (hi - lo);

        var sb = new StringBuilder();
        sb.Append($"<svg class=\"chart drift\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {F(w)} {F(h)}\" role=\"img\" aria-label=\"Drift along the network\">");
        sb.Append($"<rect x=\"{F(left)}\" y=\"{F(top)}\" width=\"{F(pw)}\" height=\"{F(ph)}\" class=\"plot\"/>");
        for (int d = lo; d <= hi; d++)
        {
            double y = top + ph * (hi - d) / (hi - lo);
            sb.Append($"<line x1=\"{F(left)}\" x2=\"{F(left + pw)}\" y1=\"{F(y)}\" y2=\"{F(y)}\" class=\"grid\"/>");
            sb.Append($"<text x=\"{F(left - 6)}\" y=\"{F(y + 4)}\" class=\"tick\" text-anchor=\"end\">1e{d}</text>");
        }
        sb.Append($"<text x=\"14\" y=\"{F(top + ph / 2)}\" class=\"axis\" text-anchor=\"middle\" transform=\"rotate(-90 14 {F(top + ph / 2)})\">max |error| / max|ref|</text>");
        sb.Append($"<text x=\"{F(left + pw / 2)}\" y=\"{F(h - 8)}\" class=\"axis\" text-anchor=\"middle\">compared tensors in the original's node order (outputs last) — {tensors.Count} in all</text>");
        if (tensors.Count > 0)
        {
            sb.Append("<polyline class=\"tolerance\" points=\"").AppendJoin(' ', tolerances.Select((t, i) => $"{F(X(i))},{F(Y(t))}")).Append("\"><title>tolerance</title></polyline>");
            sb.Append("<polyline class=\"drift-line\" points=\"").AppendJoin(' ', values.Select((v, i) => $"{F(X(i))},{F(Y(v))}")).Append("\"/>");
        }
        int first = firstFailure is null ? -1 : tensors.ToList().FindIndex(t => t.Name == firstFailure);
        for (int i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            string cls = !t.Passed ? "point fail" : values[i] == 0 ? "point exact" : "point";
            sb.Append($"<circle cx=\"{F(X(i))}\" cy=\"{F(Y(values[i]))}\" r=\"3.5\" class=\"{cls}\"><title>{E(t.Name)}: {E(Printing.Num(values[i]))} of max|ref| (tolerance {E(Printing.Num(tolerances[i]))}){(t.Passed ? "" : " FAILED")}</title></circle>");
        }
        if (first >= 0)
        {
            double x = X(first), y = Y(values[first]);
            sb.Append($"<circle cx=\"{F(x)}\" cy=\"{F(y)}\" r=\"9\" class=\"first-failure\"/>");
            string anchor = x > left + pw * 0.7 ? "end" : "start";
            sb.Append($"<text x=\"{F(x + (anchor == "end" ? -12 : 12))}\" y=\"{F(Math.Max(top + 12, y - 10))}\" class=\"label fail\" text-anchor=\"{anchor}\">first drift: {E(Shorten(tensors[first].Name, 48))}</text>");
        }
        sb.Append($"<g class=\"legend\" transform=\"translate({F(left)},{F(top - 10)})\"><circle cx=\"4\" cy=\"-4\" r=\"3.5\" class=\"point\"/><text x=\"12\" y=\"0\">within tolerance</text>" +
                  "<circle cx=\"134\" cy=\"-4\" r=\"3.5\" class=\"point fail\"/><text x=\"142\" y=\"0\">beyond tolerance</text>" +
                  "<line x1=\"262\" x2=\"284\" y1=\"-4\" y2=\"-4\" class=\"tolerance\"/><text x=\"290\" y=\"0\">tolerance (atol / max|ref|)</text>" +
                  "<circle cx=\"474\" cy=\"-4\" r=\"3.5\" class=\"point exact\"/><text x=\"482\" y=\"0\">exactly equal</text></g>");
        sb.Append("</svg>");
        return sb.ToString();
    }

    /// <summary>Elements per decade of |a − r| / max|r|, bar heights on a log scale of the count (so a few outliers
    /// show next to millions of exact ones); counts printed above the bars.</summary>
    public static string Histogram(string output, ErrorHistogram hist)
    {
        var labels = new List<string> { "0" };
        var counts = new List<long> { hist.Exact };
        labels.AddRange(hist.Labels);
        counts.AddRange(hist.Counts);
        if (hist.NonFinite > 0) { labels.Add("NaN/∞"); counts.Add(hist.NonFinite); }
        const double w = 440, h = 212, left = 16, right = 8, top = 36, bottom = 40;
        double pw = w - left - right, ph = h - top - bottom, bw = pw / labels.Count;
        double maxLog = Math.Log10(1 + Math.Max(1, counts.Max()));
        var sb = new StringBuilder();
        sb.Append($"<svg class=\"chart histogram\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {F(w)} {F(h)}\" role=\"img\" aria-label=\"Error histogram of {E(output)}\">");
        sb.Append($"<text x=\"{F(left)}\" y=\"14\" class=\"axis\">{E(Shorten(output, 40))}: elements by |error| / max|ref|</text>");
        sb.Append($"<line x1=\"{F(left)}\" x2=\"{F(left + pw)}\" y1=\"{F(top + ph)}\" y2=\"{F(top + ph)}\" class=\"grid\"/>");
        for (int i = 0; i < labels.Count; i++)
        {
            double bh = counts[i] == 0 ? 0 : Math.Max(1.5, ph * Math.Log10(1 + counts[i]) / maxLog);
            double x = left + i * bw;
            string cls = labels[i] is "≥1" or "NaN/∞" ? "bar bad" : i == 0 ? "bar exact" : "bar";
            sb.Append($"<rect x=\"{F(x + 2)}\" y=\"{F(top + ph - bh)}\" width=\"{F(bw - 4)}\" height=\"{F(bh)}\" class=\"{cls}\"><title>{E(labels[i])}: {counts[i].ToString(Inv)}</title></rect>");
            if (counts[i] > 0) sb.Append($"<text x=\"{F(x + bw / 2)}\" y=\"{F(top + ph - bh - 3)}\" class=\"count\" text-anchor=\"middle\">{Compact(counts[i])}</text>");
            sb.Append($"<text x=\"{F(x + bw / 2)}\" y=\"{F(top + ph + 14)}\" class=\"tick\" text-anchor=\"middle\">{E(labels[i])}</text>");
        }
        sb.Append($"<text x=\"{F(left + pw / 2)}\" y=\"{F(h - 6)}\" class=\"axis\" text-anchor=\"middle\">decade of |error| / max|ref| (bar height: log of the count)</text>");
        sb.Append("</svg>");
        return sb.ToString();
    }

    static string Compact(long n) => n >= 1_000_000 ? $"{(n / 1e6).ToString("0.#", Inv)}M" : n >= 10_000 ? $"{(n / 1e3).ToString("0", Inv)}k" : n.ToString(Inv);

    static string Shorten(string s, int max) => s.Length <= max ? s : "…" + s[^(max - 1)..];
}
