using System.Globalization;
using NormFold.Reports;
using NormFold.Rewriting;
using NormFold.Verification;

namespace NormFold.Cli;

/// <summary>
/// CI gates: conditions on the decisions and the check statistics that fail a run with exit 4
/// (<see cref="ExitCodes.GateFailed"/>) and write no model, listing each failure with its reason.
/// </summary>
internal sealed record Gates(bool RequireAllFolded, double? MaxDrift, double? MinCosine)
{
    public static readonly OptionSpec RequireAllFoldedOption = new("--require-all-folded", null,
        "fail (exit 4, nothing written) when any BatchNormalization (or per-channel Mul/Div/Add/Sub candidate) is left or replaced instead of folded, except an op inside an activation (PartOfActivation); each is listed with its reason");

    public static readonly OptionSpec[] DriftOptions =
    [
        new("--max-drift", "X", "fail (exit 4) when an output's max |error| / max|reference| exceeds X (e.g. 1e-5); needs the check"),
        new("--min-cosine", "C", "fail (exit 4) when an output's cosine similarity to the reference is below C (e.g. 0.99999); needs the check"),
    ];

    public static Gates Parse(string command, ParsedArgs args)
    {
        double? Number(string option, double min, double max)
        {
            if (args.Value(option) is not { } v) return null;
            if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) || !(x >= min && x <= max))
                throw new InvalidUsageException($"{command}: {option} must be a number in [{min}, {max}], got '{v}'");
            return x;
        }
        return new Gates(args.Has(RequireAllFoldedOption.Name), Number("--max-drift", 0, double.MaxValue), Number("--min-cosine", -1, 1));
    }

    public bool Any => RequireAllFolded || MaxDrift is not null || MinCosine is not null;
    public bool OnCheck => MaxDrift is not null || MinCosine is not null;

    /// <summary>The gates asked for, as given on the command line.</summary>
    public IReadOnlyList<string> Names =>
    [
        .. RequireAllFolded ? new[] { RequireAllFoldedOption.Name } : [],
        .. MaxDrift is { } d ? new[] { $"--max-drift {Printing.Num(d)}" } : [],
        .. MinCosine is { } c ? new[] { $"--min-cosine {c.ToString("R", CultureInfo.InvariantCulture)}" } : [],
    ];

    public IEnumerable<GateFailure> Check(FoldResult? fold, CheckReport? check)
    {
        if (RequireAllFolded && fold is not null)
            foreach (var d in fold.Log.Decisions.Where(d => SkipReasons.IsFoldCandidate(d) && d.Outcome != Outcome.Folded))
                yield return new GateFailure(RequireAllFoldedOption.Name, $"{d.AnchorOpType} '{d.Anchor}'" + (d.Graph == "main" ? "" : $" in {d.Graph}"),
                    $"{Printing.OutcomeText(d.Outcome)}{(d.Target is null ? "" : $" ({d.Target})")}: {d.Reason?.ToString() ?? "-"}: {d.Detail}");
        if (check is null) yield break;
        foreach (var o in check.Outputs.Where(o => o.Problem is null))
        {
            if (MaxDrift is { } max && !(o.RelativeToMagnitude <= max))
                yield return new GateFailure("--max-drift", $"output '{o.Name}'",
                    $"max |error| / max|reference| = {Printing.Num(o.RelativeToMagnitude)} > {Printing.Num(max)}");
            if (MinCosine is { } min && !(o.Cosine >= min))
                yield return new GateFailure("--min-cosine", $"output '{o.Name}'", $"cosine = {o.Cosine.ToString("G9", CultureInfo.InvariantCulture)} < {min.ToString("R", CultureInfo.InvariantCulture)}");
        }
    }

    public GateResults? Results(FoldResult? fold, CheckReport? check)
    {
        if (!Any) return null;
        var failures = Check(fold, check).ToList();
        return new GateResults(failures.Count == 0, Names, failures);
    }
}
