using Microsoft.ML.OnnxRuntime;
using NormFold.Onnx;

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
    /// <summary>Also compare every intermediate tensor both models name (see <see cref="SharedTensors"/>).</summary>
    public bool CompareIntermediates { get; init; } = true;
    /// <summary>Also replay every weight record of <see cref="FoldLog"/> from the original and require the candidate's
    /// tensors to equal the exact results bit for bit (see <see cref="WeightAudit"/>). Without a log there is nothing to
    /// replay: the audit is skipped and a note says so.</summary>
    public bool AuditWeights { get; init; }
    /// <summary>The decision log of the fold that made the candidate from the reference (for the weight audit).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Rewriting.RewriteLog? FoldLog { get; init; }
    /// <summary>Also test every channel of every compared floating-point tensor for systematic drift (gain or offset
    /// beyond rounding noise; see <see cref="ChannelDriftDetector"/>).</summary>
    public bool DetectDrift { get; init; } = true;
    /// <summary>Also compare tensors whose producing subgraph is identical in both models (identical by construction
    /// when optimisations are disabled; skipped by default).</summary>
    public bool CompareUnchanged { get; init; }
    /// <summary>Also compare tensors whose difference can only be carried from tensors compared anyway: made by nodes
    /// both models define alike from tensors both make (see <see cref="Unchanged.Classify"/>; skipped by default: a
    /// rewrite's fault shows at the outputs of the nodes it changed, which are compared).</summary>
    public bool CompareCarried { get; init; }
    /// <summary>Also judge each rewrite locally (see <see cref="LocalReplay"/>): the candidate's rewritten nodes are
    /// recomputed from the reference's own values where they read them, and each tensor they make is compared with the
    /// reference's, elementwise and for channel drift with no gain floor (<see cref="ChannelDriftDetector.ReplayMinGain"/>).
    /// When every replay agrees, an end-to-end excess (finite, floating-point) is rounding the network amplifies: it
    /// passes, marked <see cref="OutputComparison.Amplified"/>. Needs intermediates compared and optimisations disabled.</summary>
    public bool LocalReplay { get; init; } = true;
    /// <summary>Bytes of intermediates compared per batch and model when the check runs in batches: both models run
    /// in segments that expose one batch at a time, so memory holds one batch of each, not every intermediate. 0 (the
    /// default) derives it from the models (<see cref="EquivalenceChecker.BatchBudget"/>); negative: every
    /// intermediate in one run (memory for all of them at once).</summary>
    public long BatchBytes { get; init; }
    /// <summary>Compare in batches when the intermediates may hold more than this many bytes (estimated as the
    /// inputs' bytes times the number of intermediates compared); below it, one run is faster.</summary>
    public long SegmentAboveBytes { get; init; } = 256L << 20;
    /// <summary>Called with each stage, for progress display: each model's run and each comparison, per iteration and
    /// batch ("iteration 1 of 2, batch 3 of 9: running the original", "…: comparing 4 tensor(s)").</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public Action<string>? Progress { get; init; }
    /// <summary>Where the inputs came from, for the report.</summary>
    public string InputProvenance { get; init; } = "generated";
    /// <summary>How messages name the two models (default: "the original (PATH)", "the rewritten model (PATH)").</summary>
    public string? ReferenceLabel { get; init; }
    public string? CandidateLabel { get; init; }
}

public sealed record CheckReport(
    bool Passed,
    IReadOnlyList<OutputComparison> Outputs,
    IReadOnlyList<OutputComparison> Intermediates,
    IReadOnlyList<string> Notes,
    CheckOptions Options,
    string OrtVersion,
    int? FirstFailingIteration = null,
    WeightAuditResult? Audit = null)
{
    /// <summary>Tensors (outputs and intermediates) not compared because their producing subgraph is the same in both
    /// models: equal by construction.</summary>
    public int SkippedUnchanged { get; init; }
    /// <summary>Intermediates not compared because their difference can only be carried from tensors compared
    /// (<see cref="CheckOptions.CompareCarried"/>).</summary>
    public int SkippedCarried { get; init; }
    /// <summary>Every output is unchanged by construction: nothing was run (ONNX Runtime was not started).</summary>
    public bool NothingToCheck { get; init; }
    /// <summary>Batches the intermediates were compared in (each model run in as many segments); 1 for one run.</summary>
    public int Batches { get; init; } = 1;
    /// <summary>Local replay (<see cref="CheckOptions.LocalReplay"/>): each tensor the candidate's rewritten nodes make
    /// that the reference also makes, recomputed by those nodes from the reference's own inputs and compared with the
    /// reference's (named as the reference's tensor), in the reference's node order; empty when not run.</summary>
    public IReadOnlyList<OutputComparison> Replays { get; init; } = [];
    /// <summary>Rewritten nodes of the candidate replayed on the reference's values (0: no local replay).</summary>
    public int ReplayedNodes { get; init; }
    public OutputComparison? FirstFailure => Outputs.FirstOrDefault(o => !o.Passed) ?? FirstReplayFailure ?? FirstDrifting;
    /// <summary>The first replayed tensor, in the reference's node order, beyond its local tolerance: where a rewrite errs.</summary>
    public OutputComparison? FirstReplayFailure => Replays.FirstOrDefault(o => !o.Passed);
    /// <summary>The first intermediate, in the reference's node order, whose drift breaks its tolerance.</summary>
    public OutputComparison? FirstDrifting => Intermediates.FirstOrDefault(o => !o.Passed);
}

/// <summary>
/// Runs a reference and a candidate on the same inputs and compares every output of the reference, matched by name,
/// and (by default) every intermediate tensor both name. Compared per iteration; the report keeps, per tensor, the
/// worst iteration.
/// </summary>
public static class EquivalenceChecker
{
    public static string OrtVersion => OrtEnvironment.Instance.GetVersionString();

    /// <summary>Runs both models in ONNX Runtime on the same generated inputs and compares every output and every
    /// intermediate tensor a rewrite could have changed.</summary>
    public static CheckReport Check(OnnxModel reference, OnnxModel candidate, CheckOptions? options = null) =>
        Check(reference, candidate, options, null, null);

    /// <summary>Checks two loaded models: sessions are created here, once, and reused for every iteration.</summary>
    /// <param name="inputsFor">Inputs of iteration i; null generates them from the options' seed, shapes and ranges.</param>
    /// <param name="onOutputs">Called with each iteration's inputs, reference outputs and candidate outputs.</param>
    internal static CheckReport Check(OnnxModel reference, OnnxModel candidate, CheckOptions? options,
        Func<int, List<NamedTensor>>? inputsFor,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? onOutputs = null)
    {
        options ??= new CheckOptions();
        var notes = new List<string>();
        SameInputs(reference, candidate, options);
        bool generated = inputsFor is null;
        if (inputsFor is null)
        {
            var generator = new InputGenerator(ModelInputs.Of(reference), options.Seed, options.Shapes, options.Ranges);
            notes.AddRange(generator.Notes);
            inputsFor = generator.Generate;
        }
        // Iteration 0's inputs are read up to three times (size, batch sizes, the run): made once.
        var generate = inputsFor;
        List<NamedTensor>? first = null;
        inputsFor = i => i == 0 ? first ??= generate(0) : (first = null) ?? generate(i);
        var shared = options.CompareIntermediates ? SharedTensors.Names(reference, candidate) : [];
        int skipped = 0, carriedCount = 0;
        var graphOutputs = reference.Proto.Graph.Output.Select(o => o.Name).ToList();
        CheckTolerancesNameTensors(options, [.. graphOutputs, .. shared], graphOutputs);
        ReplayPlan? replay = null;
        bool replayWanted = options.LocalReplay && options.CompareIntermediates && options.Level == OrtLevel.Disable;
        if (options.Level == OrtLevel.Disable && (!options.CompareUnchanged || replayWanted))
        {
            // Identical producing subgraphs give identical values (with optimisations disabled ORT runs the same kernels).
            var (same, carried) = Unchanged.Classify(reference, candidate);
            if (!options.CompareUnchanged)
            {
                skipped = shared.Count(same.Contains) + graphOutputs.Count(same.Contains);
                shared = shared.Where(n => !same.Contains(n)).ToList();
                if (shared.Count == 0 && graphOutputs.All(same.Contains) && candidate.Proto.Graph.Output.Select(o => o.Name).SequenceEqual(graphOutputs))
                    return NothingToCheck(reference, candidate, options, [], skipped); // no input made: the generator's notes do not apply
            }
            // Before the carried tensors named by a tolerance are taken out: they are still defined alike.
            if (replayWanted)
            {
                replay = LocalReplay.Plan(reference, candidate, same, carried, out var whyNot);
                if (whyNot != null) notes.Add($"local replay not run: {whyNot}; the rewrites are judged end to end only");
            }
            if (!options.CompareUnchanged && !options.CompareCarried)
            {
                carried.ExceptWith(options.Atol.Keys.Concat(options.Rtol.Keys)); // a tolerance named for it: compared
                carriedCount = shared.Count(carried.Contains);
                shared = shared.Where(n => !carried.Contains(n)).ToList();
                if (carriedCount > 0)
                    notes.Add($"{carriedCount} intermediate(s) not compared: made by nodes both models define alike from tensors both make (a difference there is carried from the compared outputs of the nodes the fold changed)");
            }
        }
        CheckReport report;
        using (replay?.Reference)
            try
            {
                try { report = Run(replay); }
                catch (InvalidModelException e) when (replay != null && e.InnerException is OnnxRuntimeException)
                {
                    // The spliced reference failed in ORT: judged end to end (a failure of the models themselves recurs).
                    report = Run(null);
                    report = report with { Notes = [$"local replay not run: {e.Message}", .. report.Notes] };
                }
            }
            catch (InvalidModelException e) when (e.InnerException is OnnxRuntimeException && notes.Count > 0)
            {
                // ORT failed on generated inputs: the dims NormFold chose may be why.
                throw new InvalidModelException($"{e.Message} (inputs were generated: {string.Join("; ", notes)})", e.InnerException);
            }

        CheckReport Run(ReplayPlan? plan)
        {
            var first = plan?.Reference ?? reference;
            var replayed = plan?.Replayed ?? new Dictionary<string, string>();
            var shifts = plan?.Shifts ?? new Dictionary<string, ReplayShift>();
            long inputBytes = shared.Count > 0 ? inputsFor(0).Sum(i => (long)i.Data.Length + (i.Strings?.Sum(x => (long)x.Length) ?? 0)) : 0;
            if (shared.Count > 0 && options.Level == OrtLevel.Disable && options.BatchBytes >= 0
                && inputBytes * shared.Count > options.SegmentAboveBytes
                && SegmentedModel.CanSegment(reference) && SegmentedModel.CanSegment(candidate))
                return Segmented(first, candidate, options, inputsFor, onOutputs, shared, graphOutputs,
                    options.BatchBytes > 0 ? options.BatchBytes : BatchBudget(reference, candidate, inputBytes), inputBytes, replayed, shifts) with { ReplayedNodes = plan?.Nodes ?? 0 };
            // The reference tensors the replayed nodes' weights multiply, for their means (graph inputs are the inputs').
            var graphInputs = first.Proto.Graph.Input.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var means = shifts.Values.Select(s => s.Input?.Name).OfType<string>()
                .Where(n => !graphInputs.Contains(n) && !shared.Contains(n) && !graphOutputs.Contains(n)).Distinct().ToList();
            using var a = SharedTensors.Runner(first, [.. shared, .. replayed.Values, .. means], options.Level, ReferenceLabel(options, reference));
            using var b = LoadCandidate(() => SharedTensors.Runner(candidate, shared, options.Level, CandidateLabel(options, candidate)),
                () => a.Run(inputsFor(0)));
            return Check(a, b, options, inputsFor, onOutputs, shared, validateTolerances: false, replayed, shifts, means) with { ReplayedNodes = plan?.Nodes ?? 0 };
        }
        report = report with { SkippedUnchanged = skipped, SkippedCarried = carriedCount };
        var audit = options.AuditWeights && options.FoldLog is { } log ? WeightAudit.Run(reference, candidate, log) : null;
        if (options.AuditWeights && options.FoldLog is null)
            notes.Add("weight audit skipped: it replays the records of a fold, and two models given without the log of the fold between them have none");
        if (generated && options.DetectDrift && FewHalfElements(report, options.Iterations) is { } few) notes.Add(few);
        return report with { Notes = [.. notes, .. report.Notes], Audit = audit, Passed = report.Passed && (audit?.Passed ?? true) };
    }

    /// <summary>Elements per channel below which a float16/bfloat16 channel's drift test misses 1 % faults: the t test
    /// over 16 elements needs ~22σ of float16's noise (review: fp16 ResNet18 at batch 1, a [1,256,4,4] channel, γ × 1.01
    /// passes; at batch 8, 128 elements, it is caught).</summary>
    internal const int HalfChannelElements = 64;

    /// <summary>A note when a float16/bfloat16 tensor the check compared has fewer than <see cref="HalfChannelElements"/>
    /// elements per channel (every iteration pooled): generated inputs can give more.</summary>
    static string? FewHalfElements(CheckReport report, int iterations)
    {
        static long PerChannel(OutputComparison c, int iterations)
        {
            var dims = c.Shape.Trim('[', ']').Split(',');
            return dims.Length >= 2 && long.TryParse(dims[1], out long channels) && channels > 0 ? c.Elements * iterations / channels : 0;
        }
        var few = report.Outputs.Concat(report.Intermediates)
            .Where(c => c.ElementType is "float16" or "bfloat16")
            .Select(c => (Tensor: c, Elements: PerChannel(c, iterations)))
            .Where(x => x.Elements is > 0 and < HalfChannelElements)
            .OrderBy(x => x.Elements).FirstOrDefault();
        return few.Tensor is not { } t ? null
            : $"{t.ElementType} tensor '{t.Name}' {t.Shape} has {few.Elements} element(s) per channel over the run(s)" +
              (few.Elements < ChannelDriftDetector.MinElements ? $" (under {ChannelDriftDetector.MinElements}: not tested for drift)" : "") +
              $": with under {HalfChannelElements} a 1 % fault in one channel can hide in {t.ElementType} rounding noise; more iterations or a larger batch test more ({InputGenerator.ShapeHint})";
    }

    /// <summary>
    /// The candidate's session; when ORT refuses to load it, the reference is run first (<paramref name="runReference"/>):
    /// a reference that loads but fails on the inputs (a fault ORT's load-time inference missed, e.g. behind a wrong
    /// value_info, and found in the candidate) is the input's problem, reported as the reference's failure.
    /// </summary>
    static T LoadCandidate<T>(Func<T> load, Action runReference)
    {
        try { return load(); }
        catch (InvalidModelException)
        {
            runReference();
            throw;
        }
    }

    /// <summary>Checks two sessions; <paramref name="intermediates"/> are extra outputs both expose.</summary>
    internal static CheckReport Check(OrtRunner reference, OrtRunner candidate, CheckOptions? options = null,
        Func<int, List<NamedTensor>>? inputsFor = null,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? onOutputs = null,
        IReadOnlyList<string>? intermediates = null) => Check(reference, candidate, options, inputsFor, onOutputs, intermediates, validateTolerances: true);

    /// <param name="replayed">Tensors of the reference and the tensors of its spliced copies that replay them
    /// (<see cref="LocalReplay"/>); the reference session exposes both.</param>
    static CheckReport Check(OrtRunner reference, OrtRunner candidate, CheckOptions? options,
        Func<int, List<NamedTensor>>? inputsFor,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? onOutputs,
        IReadOnlyList<string>? intermediates, bool validateTolerances, IReadOnlyDictionary<string, string>? replayed = null,
        IReadOnlyDictionary<string, ReplayShift>? shifts = null, IReadOnlyList<string>? means = null)
    {
        replayed ??= new Dictionary<string, string>();
        means ??= [];
        options ??= new CheckOptions();
        var notes = new List<string>();
        if (inputsFor is null)
        {
            var generator = new InputGenerator(reference.Inputs, options.Seed, options.Shapes, options.Ranges);
            notes.AddRange(generator.Notes);
            inputsFor = generator.Generate;
        }
        var extra = new HashSet<string>([.. intermediates ?? [], .. replayed.Values, .. means]);
        // Non-tensor intermediates (sequences, maps) cannot be compared element-wise: leave them out.
        var tensorsInBoth = reference.Outputs.Where(o => o.ElementType != 0).Select(o => o.Name)
            .Intersect(candidate.Outputs.Where(o => o.ElementType != 0).Select(o => o.Name)).ToHashSet();
        var graphOutputs = reference.Outputs.Where(o => !extra.Contains(o.Name)).Select(o => o.Name).ToList();
        var shared = (intermediates ?? []).Where(tensorsInBoth.Contains).ToList();
        var referenceNames = graphOutputs.Concat(shared).ToList();
        var replayNames = replayed.Where(kv => referenceNames.Contains(kv.Key)).Select(kv => kv.Value).ToList();
        if (validateTolerances) CheckTolerancesNameTensors(options, referenceNames, graphOutputs);
        var candidateNames = candidate.Outputs.Select(o => o.Name).ToHashSet();

        var tally = new Tally(options, replayed, shifts, means);
        for (int it = 0; it < options.Iterations; it++)
        {
            var inputs = inputsFor(it);
            string stage = $"iteration {it + 1} of {options.Iterations}";
            options.Progress?.Invoke($"{stage}: running the original");
            using var expected = reference.RunInPlace(inputs, [.. referenceNames, .. replayNames, .. means.Where(reference.Outputs.Select(o => o.Name).Contains)]);
            options.Progress?.Invoke($"{stage}: running the rewritten model");
            using var candidateOutputs = candidate.RunInPlace(inputs, referenceNames.Where(candidateNames.Contains).ToList());
            var actual = candidateOutputs.ToDictionary(t => t.Name);
            onOutputs?.Invoke(it, inputs, expected.Take(graphOutputs.Count).ToList(), actual.Where(kv => !extra.Contains(kv.Key)).ToDictionary());
            options.Progress?.Invoke($"{stage}: comparing {expected.Count} tensor(s)");
            tally.Add(it, expected, actual, inputs);
        }
        return tally.Report(graphOutputs, shared, notes);
    }

    /// <summary>
    /// Bytes of intermediates per batch and model: half the models' own footprint (the larger model's weights plus
    /// the inputs, which an outputs-only check holds too), at least 32 MiB. Both models hold one batch at a time, so
    /// the intermediates add about that footprint to the peak: an outputs-only check holds it and ORT's working set.
    /// </summary>
    internal static long BatchBudget(OnnxModel reference, OnnxModel candidate, long inputBytes) =>
        Math.Max(32L << 20, (Math.Max(WeightBytes(reference), WeightBytes(candidate)) + inputBytes) / 2);

    static long WeightBytes(OnnxModel m) =>
        m.Proto.Graph.Initializer.Sum(t => t.Dims.Aggregate(1L, (p, d) => p * Math.Max(d, 0)) * Math.Max(Tensors.ElementType.Size(t.DataType), 1));

    /// <summary>
    /// The intermediates in batches of about <paramref name="budget"/> bytes (in the reference's node order, sizes
    /// estimated by <see cref="TensorSizes"/>), the graph outputs last: each model runs segment by segment
    /// (<see cref="SegmentedModel"/>), and batch k is compared and freed before segment k + 1 runs.
    /// </summary>
    static CheckReport Segmented(OnnxModel reference, OnnxModel candidate, CheckOptions options,
        Func<int, List<NamedTensor>> inputsFor,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? onOutputs,
        List<string> shared, List<string> graphOutputs, long budget, long inputBytes, IReadOnlyDictionary<string, string> replayed,
        IReadOnlyDictionary<string, ReplayShift> shifts)
    {
        var compared = shared.Concat(graphOutputs).ToList();
        // A replayed tensor is batched with the tensor it replays (both in the reference's batch).
        List<string> WithReplays(List<string> batch) => [.. batch, .. batch.Where(replayed.ContainsKey).Select(n => replayed[n])];
        using var a = new SegmentedModel(reference, WithReplays(compared), options.Level, ReferenceLabel(options, reference));
        using var b = new SegmentedModel(candidate, compared, options.Level, CandidateLabel(options, candidate));
        var tally = new Tally(options, replayed, shifts, []); // the means of compared tensors and graph inputs only
        var size = TensorSizes.Estimate(reference, inputsFor(0));
        int next = 0;             // shared tensors batched so far
        bool complete = false;    // the graph outputs' batch is defined
        for (int it = 0; it < options.Iterations; it++)
        {
            var inputs = inputsFor(it);
            // Copied into ORT values once, read by both models' segments.
            var values = inputs.ToDictionary(i => i.Name, OrtRunner.Value, StringComparer.Ordinal);
            try
            {
                a.Begin(values);
                b.Begin(values);
                for (int k = 0; k < a.Count || !complete; k++)
                {
                    if (k == a.Count)
                    {
                        List<string> batch;
                        if (next < shared.Count)
                        {
                            int first = next;
                            for (long bytes = 0; next < shared.Count && (next == first || bytes + size.GetValueOrDefault(shared[next], 1) <= budget); next++)
                                bytes += size.GetValueOrDefault(shared[next], 1);
                            batch = shared.GetRange(first, next - first);
                        }
                        else { batch = graphOutputs; complete = true; }
                        a.Define(WithReplays(batch));
                        b.Define(batch);
                    }
                    string stage = $"iteration {it + 1} of {options.Iterations}, batch {k + 1}" +
                        (complete ? $" of {a.Count}" : $" ({next} of {shared.Count} intermediates)");
                    options.Progress?.Invoke($"{stage}: running the original");
                    var expected = a.Run(k);
                    options.Progress?.Invoke($"{stage}: running the rewritten model");
                    var actual = b.Run(k).ToDictionary(t => t.Name);
                    options.Progress?.Invoke($"{stage}: comparing {expected.Count} tensor(s)");
                    bool last = complete && k == a.Count - 1;
                    if (last) onOutputs?.Invoke(it, inputs, expected.Where(t => !tally.IsReplay(t.Name)).ToList(), actual);
                    tally.Add(it, expected, actual, inputs);
                    a.Release(k);
                    b.Release(k);
                }
            }
            finally
            {
                a.End();
                b.End();
                foreach (var v in values.Values) v.Dispose();
            }
        }
        return tally.Report(graphOutputs, shared, []) with { Batches = a.Count };
    }

    static void CheckTolerancesNameTensors(CheckOptions options, List<string> names, List<string> graphOutputs)
    {
        foreach (var named in options.Atol.Keys.Concat(options.Rtol.Keys))
            if (named.Length > 0 && !names.Contains(named))
                throw new InvalidUsageException($"a tolerance is given for '{named}', which is neither an output nor a tensor both models share (outputs: {string.Join(", ", graphOutputs)})");
    }

    /// <summary>Every output unchanged by construction: a passing report, nothing run.</summary>
    static CheckReport NothingToCheck(OnnxModel reference, OnnxModel candidate, CheckOptions options, List<string> notes, int skipped)
    {
        var audit = options.AuditWeights && options.FoldLog is { } log ? WeightAudit.Run(reference, candidate, log) : null;
        notes.Add($"nothing to check: every output's producing subgraph is the same in both models ({skipped} tensor(s) equal by construction); ONNX Runtime was not run");
        return new CheckReport(audit?.Passed ?? true, [], [], notes, options, "not run", null, audit) { NothingToCheck = true, SkippedUnchanged = skipped, Batches = 0 };
    }

    /// <summary>Per tensor the worst iteration's comparison, and the drift sums of every iteration; the same for the
    /// replayed tensors (<see cref="LocalReplay"/>: the reference's run holds both a tensor and its replay).</summary>
    /// <param name="meansOnly">Tensors the reference exposes only for their channel means (<see cref="LinearInput"/>).</param>
    sealed class Tally(CheckOptions options, IReadOnlyDictionary<string, string> replayed, IReadOnlyDictionary<string, ReplayShift>? shifts,
        IReadOnlyList<string> meansOnly)
    {
        readonly Kind _endToEnd = new(), _replay = new();
        readonly HashSet<string> _replayNames = replayed.Values.ToHashSet(StringComparer.Ordinal);
        readonly HashSet<string> _meansOnly = meansOnly.ToHashSet(StringComparer.Ordinal);
        /// <summary>(tensor, channel axis) → per channel Σx, Σx², max|x| and count over every run so far, of the tensors
        /// weights multiply.</summary>
        readonly Dictionary<(string Name, int Axis), (double[] Sum, double[] Squares, double[] Max, long[] Count)> _means = (shifts?.Values ?? [])
            .Select(s => s.Input).OfType<LinearInput>().Select(i => (i.Name, i.Axis)).Distinct()
            .ToDictionary(k => k, _ => (Array.Empty<double>(), Array.Empty<double>(), Array.Empty<double>(), Array.Empty<long>()));
        int? _firstFailing;

        /// <summary>Adds a tensor's per-channel sums (along the key's axis) to its running moments.</summary>
        void AddMeans((string Name, int Axis) key, NamedTensor t)
        {
            if (t.Strings != null || !t.IsFloatingPoint || key.Axis >= t.Shape.Length) return;
            var (sum, squares, max, count) = _means[key];
            int channels = (int)t.Shape[key.Axis];
            if (sum.Length == 0) _means[key] = (sum, squares, max, count) = (new double[channels], new double[channels], new double[channels], new long[channels]);
            if (sum.Length != channels) return;
            long inner = 1;
            for (int d = key.Axis + 1; d < t.Shape.Length; d++) inner *= t.Shape[d];
            var v = t.ToDoubles();
            for (long i = 0; i < v.Length; i++)
                if (double.IsFinite(v[i]))
                {
                    int c = (int)(i / inner % channels);
                    sum[c] += v[i]; squares[c] += v[i] * v[i]; max[c] = Math.Max(max[c], Math.Abs(v[i])); count[c]++;
                }
        }

        InputMoments? MomentsOf(LinearInput? input)
        {
            if (input is null || !_means.TryGetValue((input.Name, input.Axis), out var m) || m.Sum.Length == 0 || m.Count.Any(n => n == 0)) return null;
            var mean = m.Sum.Select((s, c) => s / m.Count[c]).ToArray();
            return new InputMoments(mean, m.Squares.Select((q, c) => Math.Sqrt(Math.Max(0, q / m.Count[c] - mean[c] * mean[c]))).ToArray(), m.Max);
        }

        /// <summary>Per channel of a replayed float16/bfloat16 tensor, what its stored weights and constant, rounded once,
        /// can move any element by against the largest |x| of the input so far (<see cref="ReplayShift.Rounding"/>);
        /// null when not known.</summary>
        double[]? Slack(NamedTensor t) =>
            t.Shape.Length >= 2 && shifts?.GetValueOrDefault(t.Name) is { } shift && t.Shape[1] is > 0 and <= int.MaxValue
                ? shift.Rounding(t.Shape, (int)t.Shape[1], t.ElementType, MomentsOf(shift.Input)?.Magnitude) : null;

        sealed class Kind
        {
            public readonly Dictionary<string, OutputComparison> Worst = new(StringComparer.Ordinal);
            // Systematic drift is decided once over every iteration's elements: more elements, a surer decision.
            public readonly Dictionary<string, ChannelDriftDetector.Accumulator> DriftSums = new(StringComparer.Ordinal);
        }

        public bool IsReplay(string name) => _replayNames.Contains(name);

        public void Add(int iteration, IReadOnlyList<NamedTensor> expected, IReadOnlyDictionary<string, NamedTensor> actual, IReadOnlyList<NamedTensor> inputs)
        {
            var byName = expected.ToDictionary(t => t.Name, StringComparer.Ordinal);
            foreach (var key in _means.Keys.ToList())
                if ((byName.GetValueOrDefault(key.Name) ?? inputs.FirstOrDefault(i => i.Name == key.Name)) is { } x) AddMeans(key, x);
            var regular = expected.Where(t => !IsReplay(t.Name) && !_meansOnly.Contains(t.Name)).ToList();
            // (reference, replayed under the reference's name) of every replayed tensor this batch holds
            var pairs = regular.Where(t => replayed.TryGetValue(t.Name, out var r) && byName.ContainsKey(r))
                .Select(t => (Reference: t, Replay: byName[replayed[t.Name]] with { Name = t.Name }, Slack: Slack(t))).ToList();
            var drift = options.DetectDrift ? DriftMode.Accumulate : DriftMode.None;
            // Tensors are independent: compare them on every core.
            var compared = new OutputComparison[regular.Count + pairs.Count];
            Parallel.For(0, compared.Length, k => compared[k] = k < regular.Count
                ? Comparator.Compare(regular[k], actual.GetValueOrDefault(regular[k].Name),
                    (type, magnitude) => ToleranceFor(options, regular[k].Name, type, magnitude), drift)
                : Comparator.Compare(pairs[k - regular.Count].Reference, pairs[k - regular.Count].Replay, Tolerance.Default, drift, pairs[k - regular.Count].Slack));
            for (int k = 0; k < compared.Length; k++)
            {
                var c = compared[k];
                var kind = k < regular.Count ? _endToEnd : _replay;
                if (c.DriftSums is { } s)
                    if (kind.DriftSums.TryGetValue(c.Name, out var merged)) merged.Merge(s); else kind.DriftSums[c.Name] = s;
                if (!c.Passed) _firstFailing ??= iteration;
                if (!kind.Worst.TryGetValue(c.Name, out var w) || Worse(c, w)) kind.Worst[c.Name] = c;
            }
        }

        public CheckReport Report(List<string> graphOutputs, List<string> shared, List<string> notes)
        {
            foreach (var (name, sums) in _endToEnd.DriftSums) _endToEnd.Worst[name] = Comparator.WithDrift(_endToEnd.Worst[name], sums);
            foreach (var (name, sums) in _replay.DriftSums)
                _replay.Worst[name] = Comparator.WithDrift(_replay.Worst[name], sums, ChannelDriftDetector.ReplayMinGain, ChannelDriftDetector.ReplayMagnitudeUlps,
                    shifts?.GetValueOrDefault(name), MomentsOf(shifts?.GetValueOrDefault(name)?.Input));
            var outputs = graphOutputs.Select(n => _endToEnd.Worst[n]).ToList();
            var inner = shared.Select(n => _endToEnd.Worst[n]).ToList();
            var replays = shared.Concat(graphOutputs).Where(_replay.Worst.ContainsKey).Select(n => _replay.Worst[n]).ToList();
            bool replaysPass = replays.All(r => r.Passed);
            // Every rewritten node replayed within its local tolerance: an end-to-end excess is rounding the network
            // amplifies (a NaN/Inf mismatch, a shape, type or integer difference is not excused, nor an excess over a
            // tolerance the caller set: that is a demand on the outputs as they are).
            if (replaysPass && replayed.Count > 0 && replayed.Keys.All(_replay.Worst.ContainsKey))
            {
                bool Excusable(OutputComparison c) => !c.Passed && c.Amplifiable && !CallerTolerance(options, c.Name);
                OutputComparison Excuse(OutputComparison c) => Excusable(c) ? c with { Passed = true, Amplified = true } : c;
                var amplified = outputs.Concat(inner).Where(Excusable).ToList();
                outputs = outputs.Select(Excuse).ToList();
                inner = inner.Select(Excuse).ToList();
                if (amplified.Count > 0)
                {
                    var worst = amplified.MaxBy(c => c.RelativeToMagnitude)!;
                    var local = replays.MaxBy(r => r.RelativeToMagnitude)!;
                    notes = [.. notes, $"{amplified.Count} tensor(s) differ beyond the end-to-end tolerance (worst '{worst.Name}': " +
                        $"{worst.RelativeToMagnitude:G3} of max|ref|{(worst.DriftingChannels > 0 ? $", {worst.DriftingChannels} channel(s) drifting" : "")}), " +
                        $"but each of the {replays.Count} tensor(s) the rewritten nodes make, recomputed from the original's own inputs, agrees " +
                        $"(worst '{local.Name}': {local.RelativeToMagnitude:G3} of max|ref|, no channel drift): the difference is rounding the network amplifies, not the rewrite"];
                }
            }
            bool passed = replaysPass && outputs.All(o => o.Passed) && inner.All(o => o.Passed);
            return new CheckReport(passed, outputs, inner, notes, options, OrtVersion, passed ? null : _firstFailing) { Replays = replays };
        }
    }

    static string ReferenceLabel(CheckOptions o, OnnxModel m) =>
        o.ReferenceLabel ?? (m.SourcePath is { } p ? $"the original ({p})" : "the original");

    static string CandidateLabel(CheckOptions o, OnnxModel m) =>
        o.CandidateLabel ?? (m.SourcePath is { } p ? $"the rewritten model ({p})" : "the rewritten model");

    /// <summary>Both models must take the same inputs (names, element types, ranks), or one set of inputs cannot feed both.</summary>
    static void SameInputs(OnnxModel reference, OnnxModel candidate, CheckOptions options)
    {
        var theirs = ModelInputs.Of(candidate).ToDictionary(i => i.Name);
        string r = reference.SourcePath ?? options.ReferenceLabel ?? "the original", c = candidate.SourcePath ?? options.CandidateLabel ?? "the rewritten model";
        foreach (var mine in ModelInputs.Of(reference))
        {
            if (!theirs.Remove(mine.Name, out var other))
                throw new InvalidUsageException($"{c}: has no input '{mine.Name}', which {r} takes");
            if (other.ElementType != mine.ElementType)
                throw new InvalidUsageException($"{c}: input '{mine.Name}' is {Tensors.ElementType.Name(other.ElementType)}, in {r} it is {Tensors.ElementType.Name(mine.ElementType)}");
            if (!other.UnknownRank && !mine.UnknownRank && other.Dims.Length != mine.Dims.Length)
                throw new InvalidUsageException($"{c}: input '{mine.Name}' has rank {other.Dims.Length}, in {r} {mine.Dims.Length}");
        }
        if (theirs.Count > 0) throw new InvalidUsageException($"{c}: takes input '{theirs.Keys.First()}', which {r} does not");
    }

    static bool Worse(OutputComparison a, OutputComparison b) =>
        a.Passed != b.Passed ? !a.Passed : a.RelativeToMagnitude > b.RelativeToMagnitude;

    /// <summary>Whether the caller set atol or rtol for this tensor (by name or for every tensor).</summary>
    static bool CallerTolerance(CheckOptions o, string name) =>
        o.Atol.ContainsKey(name) || o.Atol.ContainsKey("") || o.Rtol.ContainsKey(name) || o.Rtol.ContainsKey("");

    static Tolerance ToleranceFor(CheckOptions o, string output, int type, double magnitude)
    {
        var d = Tolerance.Default(type, magnitude);
        double atol = o.Atol.TryGetValue(output, out var a) ? a : o.Atol.TryGetValue("", out var aa) ? aa : d.Atol;
        double rtol = o.Rtol.TryGetValue(output, out var r) ? r : o.Rtol.TryGetValue("", out var rr) ? rr : d.Rtol;
        return new Tolerance(atol, rtol);
    }
}
