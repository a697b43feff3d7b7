using Microsoft.ML.OnnxRuntime;

namespace NormFold.Verification;

public sealed record CheckOptions
{
    public int Seed { get; init; }
    public int Iterations { get; init; } = 1;
    public IReadOnlyDictionary<string, long[]> Shapes { get; init; } = new Dictionary<string, long[]>();
    public IReadOnlyList<ValueRange> Ranges { get; init; } = [];
    /// <summary>atol / rtol overrides by output name; the key "" applies to every output.</summary>
    public IReadOnlyDictionary<string, double> Atol { get; init; } = new Dictionary<string, double>();
    public IReadOnlyDictionary<string, double> Rtol { get; init; } = new Dictionary<string, double>();
    /// <summary>ONNX Runtime graph optimisation level for both sessions.</summary>
    public OrtLevel Level { get; init; } = OrtLevel.Disable;
    /// <summary>Where the inputs came from, for the report.</summary>
    public string InputProvenance { get; init; } = "generated";
}

public sealed record CheckReport(
    bool Passed,
    IReadOnlyList<OutputComparison> Outputs,
    IReadOnlyList<string> Notes,
    CheckOptions Options,
    string OrtVersion)
{
    public OutputComparison? FirstFailure => Outputs.FirstOrDefault(o => !o.Passed);
}

/// <summary>
/// Runs a reference and a candidate session on the same inputs and compares every output of the reference,
/// matched by name. Outputs are compared per iteration; the report keeps, per output, the worst iteration.
/// </summary>
public static class EquivalenceChecker
{
    public static string OrtVersion => OrtEnv.Instance().GetVersionString();

    public static CheckReport Check(OrtRunner reference, OrtRunner candidate, CheckOptions? options = null,
        Func<int, List<NamedTensor>>? inputsFor = null)
    {
        options ??= new CheckOptions();
        var notes = new List<string>();
        if (inputsFor is null)
        {
            var generator = new InputGenerator(reference.Inputs, options.Seed, options.Shapes, options.Ranges);
            notes.AddRange(generator.Notes);
            inputsFor = generator.Generate;
        }
        var candidateOutputs = candidate.Outputs.Select(o => o.Name).ToHashSet();
        var worst = new Dictionary<string, OutputComparison>();
        for (int it = 0; it < options.Iterations; it++)
        {
            var inputs = inputsFor(it);
            var expected = reference.Run(inputs);
            var present = expected.Where(e => candidateOutputs.Contains(e.Name)).Select(e => e.Name).ToList();
            var actual = candidate.Run(inputs, present).ToDictionary(t => t.Name);
            foreach (var e in expected)
            {
                var c = Comparator.Compare(e, actual.GetValueOrDefault(e.Name), (type, magnitude) => ToleranceFor(options, e.Name, type, magnitude));
                if (!worst.TryGetValue(e.Name, out var w) || Worse(c, w)) worst[e.Name] = c;
            }
        }
        var outputs = reference.Outputs.Select(o => worst[o.Name]).ToList();
        return new CheckReport(outputs.All(o => o.Passed), outputs, notes, options, OrtVersion);
    }

    static bool Worse(OutputComparison a, OutputComparison b) =>
        a.Passed != b.Passed ? !a.Passed : a.RelativeToMagnitude > b.RelativeToMagnitude;

    static Tolerance ToleranceFor(CheckOptions o, string output, int type, double magnitude)
    {
        var d = Tolerance.Default(type, magnitude);
        double atol = o.Atol.TryGetValue(output, out var a) ? a : o.Atol.TryGetValue("", out var aa) ? aa : d.Atol;
        double rtol = o.Rtol.TryGetValue(output, out var r) ? r : o.Rtol.TryGetValue("", out var rr) ? rr : d.Rtol;
        return new Tolerance(atol, rtol);
    }
}
