using System.Diagnostics;
using System.Globalization;
using System.Text;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using NormFold;
using NormFold.Bench;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Verification;

// NormFold's benchmarks: every number is a ratio taken in this one run on this one machine.
// Usage: dotnet run --project bench/NormFold.Bench -c Release [-- --quick] [--out DIR]
// Whole-process timings: ... -- --process [--runs N] [--no-publish] [--prepare: publish, make the models, print the commands] (ProcessBench.cs)
// Peak memory, float_data vs raw_data weights: ... -- --float-data [--normfold path/to/normfold.dll] [--out DIR]
bool quick = args.Contains("--quick");
if (args.Length > 0 && args[0] == "--process")
    return ProcessBench.Run(FindRepo(), Path.GetFullPath(args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault() ?? "bench-out"),
        int.Parse(args.SkipWhile(a => a != "--runs").Skip(1).FirstOrDefault() ?? "7"), publish: !args.Contains("--no-publish"),
        prepareOnly: args.Contains("--prepare"));
if (args.Length > 1 && args[0] == "--phases") return Phases(args[1]);
if (args.Length > 1 && args[0] == "--scaling") return Scaling(args[1]);
if (args.Length > 0 && args[0] == "--half-kernel") return HalfKernel();
if (args.Length > 0 && args[0] == "--many-bns") return ManyBns(args.Skip(1).Select(int.Parse).DefaultIfEmpty(10_000).ToArray());
if (args.Length > 1 && args[0] == "--large-activations") return LargeActivations(args[1]);
if (args.Length > 1 && args[0] == "--checker") return Checker(args[1], args.Length > 2 ? int.Parse(args[2]) : 5);
if (args.Length > 0 && args[0] == "--float-data")
    return FloatDataMemory(Path.GetFullPath(args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault() ?? "bench-out"),
        args.SkipWhile(a => a != "--normfold").Skip(1).FirstOrDefault() ?? Path.Combine(AppContext.BaseDirectory, "normfold.dll"));
if (args.Length > 1 && args[0] == "--fold-samples") return FoldSamples(args[1], args.Length > 2 ? int.Parse(args[2]) : 9);
string outDir = Path.GetFullPath(args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault() ?? "bench-out");
Directory.CreateDirectory(outDir);
string repo = FindRepo();
string normfold = Path.Combine(AppContext.BaseDirectory, "normfold.dll");
var md = new StringBuilder();
void Line(string s = "") { Console.WriteLine(s); md.AppendLine(s); }
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

Line($"# NormFold benchmark run {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
Line($"Machine: {Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}, ONNX Runtime {EquivalenceChecker.OrtVersion}{(quick ? ", --quick" : "")}");
Line();

// ---- models ---------------------------------------------------------------------------------------------------
Console.Error.WriteLine("generating models…");
var factory = new ModelFactory(7);
string resnet50 = Path.Combine(outDir, "resnet50.onnx");
ModelFactory.Write(factory.ResNet50(), resnet50);
string resnet50h = Path.Combine(outDir, "resnet50_fp16.onnx");
ModelFactory.Write(ModelFactory.ToFloat16(OnnxModel.Load(resnet50).Proto), resnet50h);
string extDir = Path.Combine(outDir, "external");
Directory.CreateDirectory(extDir);
string resnet50x = Path.Combine(extDir, "resnet50_ext.onnx");
ModelWriter.Save(OnnxModel.Load(resnet50), resnet50x, new SaveOptions { ExternalData = ExternalDataMode.All });
string resnet50f = Path.Combine(outDir, "resnet50_float_data.onnx");
ModelFactory.Write(ModelFactory.ToFloatData(OnnxModel.Load(resnet50).Proto), resnet50f);
string gnNet = Path.Combine(outDir, "groupnorm_net.onnx");
ModelFactory.Write(new ModelFactory(9).GroupNormNet(), gnNet);

var models = new List<(string Name, string Path)>
{
    ("resnet_tiny (tests/models)", Path.Combine(repo, "tests/models/resnet_tiny.onnx")),
    ("mlp_bn1d (tests/models)", Path.Combine(repo, "tests/models/mlp_bn1d.onnx")),
    ("ResNet-50 shape, float32", resnet50),
    ("ResNet-50 shape, float16", resnet50h),
    ("ResNet-50 shape, external data", resnet50x),
};

// ---- 1. fold time vs the I/O floor, and vs ORT's optimiser -----------------------------------------------------
int reps = quick ? 3 : 15;
Line("## Fold time: NormFold vs the protobuf floor and ONNX Runtime's offline optimiser");
Line();
Line("Floor = Google.Protobuf parse + serialise of the same file in this process. ORT = session creation at ORT_ENABLE_BASIC with");
Line($"OptimizedModelFilePath (what users run today to get ORT's fused graph offline). Medians of {reps}, the four interleaved; fold = load + fold + save.");
Line();
Line("Write-only = writing the same number of bytes from a warm buffer to a new file: the least any tool that saves the model pays.");
Line("Every column writes a new file; overwriting an existing output would add the old file's deletion to each alike.");
Line();
Line("| Model | Size MB | Write-only ms | Floor ms | Fold ms | Fold / floor | ORT basic+save ms | ORT / fold |");
Line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
foreach (var (name, path) in models)
{
    string tmp = Path.Combine(outDir, "tmp.onnx");
    double size = ModelBytes(path) / 1e6;
    var floor = new List<double>(); var fold = new List<double>(); var ort = new List<double>(); var write = new List<double>();
    var warm = new byte[1 << 20];
    long total = ModelBytes(path);
    var dataFiles = ExternalFiles(path);
    string folded = Path.Combine(outDir, "folded_tmp.onnx"), ortOut = Path.Combine(outDir, "ort_tmp.onnx"), written = Path.Combine(outDir, "write_tmp.onnx");
    for (int i = 0; i < reps; i++)
    {
        // Interleaved, so that no side always runs on a warm cache; each writes a file that does not exist yet (the
        // previous one is deleted before the clock starts); Time collects garbage first, so no side pays for another's.
        Fresh(tmp, tmp + ".data");
        floor.Add(Time(() =>
        {
            ModelProto m;
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16)) m = ModelProto.Parser.ParseFrom(f);
            using (var o = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20)) m.WriteTo(o);
            // An external-data model's floor also reads and writes its data file(s).
            foreach (var data in dataFiles) File.WriteAllBytes(tmp + ".data", File.ReadAllBytes(data));
        }));
        Fresh(folded, folded + ".data");
        fold.Add(Time(() => Folding.FoldFile(path, folded)));
        Fresh(ortOut);
        ort.Add(Time(() =>
        {
            using var o = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, OptimizedModelFilePath = ortOut };
            using var s = new InferenceSession(path, o);
        }));
        Fresh(written);
        write.Add(Time(() =>
        {
            using var o = new FileStream(written, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
            for (long done = 0; done < total; done += warm.Length) o.Write(warm, 0, (int)Math.Min(warm.Length, total - done));
        }));
    }
    double fl = Median(floor), fo = Median(fold), or = Median(ort), wr = Median(write);
    Line($"| {name} | {size:F1} | {wr:F1} | {fl:F1} | {fo:F1} | {fo / fl:F2}× | {or:F1} | {or / fo:F1}× |");
}
Line();

// ---- 2. peak memory ---------------------------------------------------------------------------------------------
Line("## Peak memory of `normfold fold` (child process, kernel's VmHWM)");
Line();
long baseline = PeakRss("--version");
Line($"A process that only starts the runtime (`normfold --version`) peaks at {baseline / 1024.0:F0} MB; the ratio below subtracts nothing.");
Line();
Line("| Model | Model MB | Peak RSS MB | Peak / model | (Peak − runtime) / model |");
Line("| --- | ---: | ---: | ---: | ---: |");
foreach (var (name, path) in models.Skip(2).Append(("ResNet-50 shape, float_data", resnet50f)))
{
    long peak = PeakRss($"fold \"{path}\" -o \"{Path.Combine(outDir, "peak_out.onnx")}\" -q");
    double mb = ModelBytes(path) / 1e6;
    Line($"| {name} | {mb:F1} | {peak / 1024.0:F0} | {peak * 1024.0 / ModelBytes(path):F2}× | {(peak - baseline) * 1024.0 / ModelBytes(path):F2}× |");
}
Line();

// ---- 3. inference ----------------------------------------------------------------------------------------------
string folded50 = Path.Combine(outDir, "resnet50.folded.onnx");
Folding.FoldFile(resnet50, folded50);
int runs = quick ? 5 : 30;
Line($"## Inference: ResNet-50 shape, batch 1, one intra-op thread, after 3 warm-up runs, {runs} runs interleaved");
Line();
int rounds = quick ? 3 : 15;
Line($"| Model | ORT level | Session ms (median of {rounds}, interleaved) | Latency median ms | p90 ms |");
Line("| --- | --- | ---: | ---: | ---: |");
var input = new InputGenerator(new OrtRunner(resnet50).Inputs, 0, new Dictionary<string, long[]> { ["input"] = [1, 3, 224, 224] }).Generate(0);
var latency = new Dictionary<string, double>();
var creation = new Dictionary<string, List<double>>();
var configs = new[] { ("original", resnet50), ("folded", folded50) }
    .SelectMany(m => new[] { OrtLevel.Disable, OrtLevel.Basic, OrtLevel.All }.Select(l => (Label: m.Item1, Path: m.Item2, Level: l))).ToList();
// Session creation: interleaved rounds, so that machine noise spreads over every configuration alike.
for (int round = 0; round < rounds; round++)
    foreach (var c in configs)
    {
        OrtRunner? created = null;
        double ms = Time(() => created = new OrtRunner(c.Path, c.Level, intraOpThreads: 1));
        created!.Dispose();
        (creation.TryGetValue($"{c.Label}/{c.Level}", out var list) ? list : creation[$"{c.Label}/{c.Level}"] = []).Add(ms);
    }
// Latency: all six sessions open at once, runs interleaved round by round (machine drift hits every one alike).
var runners = configs.Select(c => new OrtRunner(c.Path, c.Level, intraOpThreads: 1)).ToList();
foreach (var r in runners) for (int i = 0; i < 3; i++) r.Run(input);
var samples = configs.Select(_ => new List<double>()).ToList();
for (int round = 0; round < runs; round++)
    for (int k = 0; k < runners.Count; k++)
    {
        var r = runners[k];
        samples[k].Add(Time(() => r.Run(input)));
    }
foreach (var r in runners) r.Dispose();
for (int k = 0; k < configs.Count; k++)
{
    var (c, t) = (configs[k], samples[k]);
    latency[$"{c.Label}/{c.Level}"] = Median(t);
    Line($"| {c.Label} | {c.Level.ToString().ToLowerInvariant()} | {Median(creation[$"{c.Label}/{c.Level}"]):F0} | {Median(t):F1} | {Percentile(t, 0.9):F1} |");
}
Line();
{
    var paired = samples[configs.FindIndex(c => c is { Label: "folded", Level: OrtLevel.Disable })]
        .Zip(samples[configs.FindIndex(c => c is { Label: "original", Level: OrtLevel.Basic })], (f, o) => f / o).ToList();
    Line($"Latency, folded at DISABLE_ALL / original at ENABLE_BASIC, paired per round: median {Median(paired):F3}×, " +
         $"middle half {Percentile(paired, 0.25):F3}×–{Percentile(paired, 0.75):F3}×.");
}
Line($"Folded under DISABLE_ALL vs original under ENABLE_BASIC: {latency["folded/Disable"] / latency["original/Basic"]:F3}× the latency (target ≤ 1). " +
     $"Folded vs original session creation under ENABLE_ALL: {Median(creation["folded/All"]) / Median(creation["original/All"]):F2}× (target ≤ 1).");
{
    // Each round created the two ENABLE_ALL sessions back to back: their ratio per round cancels the slow drifts.
    var paired = creation["folded/All"].Zip(creation["original/All"], (f, o) => f / o).ToList();
    Line($"Paired per round: median {Median(paired):F2}×, middle half {Percentile(paired, 0.25):F2}×–{Percentile(paired, 0.75):F2}×, " +
         $"{paired.Count(r => r <= 1)} of {paired.Count} rounds ≤ 1.");
}
Line();

// ---- 4. drift: NormFold's fold vs ORT's --------------------------------------------------------------------------
Line("## Drift: NormFold's fold vs ONNX Runtime's own fold, each against the original run with optimisations disabled");
Line();
Line("ORT's fold = the graph ORT writes at ORT_ENABLE_BASIC (OptimizedModelFilePath). Inputs: 10 seeded batches of 1.");
Line("Weight error: every folded Conv weight against the exact fold W·γ/√(var+ε) computed in double from the original,");
Line("in units in the last place of the stored type (0.5 is the best any rounding can do).");
Line();
Line("| Model | Which fold | Output max abs error | Max abs / max\\|ref\\| | Weight error, max ulp | mean ulp | BN left |");
Line("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
foreach (var (label, path) in new[] { ("float32", resnet50), ("float16", resnet50h) })
{
    string ours = Path.Combine(outDir, $"drift_ours_{label}.onnx"), theirs = Path.Combine(outDir, $"drift_ort_{label}.onnx");
    Folding.FoldFile(path, ours);
    using (var o = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, OptimizedModelFilePath = theirs })
    using (new InferenceSession(path, o)) { }
    using var reference = new OrtRunner(path);
    var gen = new InputGenerator(reference.Inputs, 1, new Dictionary<string, long[]> { ["input"] = [1, 3, 224, 224] });
    foreach (var (which, candidatePath) in new[] { ("NormFold", ours), ("ORT basic", theirs) })
    {
        using var candidate = new OrtRunner(candidatePath);
        double maxAbs = 0, rel = 0;
        for (int it = 0; it < 10; it++)
        {
            var x = gen.Generate(it);
            var c = Comparator.Compare(reference.Run(x)[0], candidate.Run(x)[0]);
            maxAbs = Math.Max(maxAbs, c.MaxAbs);
            rel = Math.Max(rel, c.RelativeToMagnitude);
        }
        var (maxUlp, meanUlp, convs) = WeightUlps(path, candidatePath);
        int bnLeft = OnnxModel.Load(candidatePath).Proto.Graph.Node.Count(n => n.OpType == "BatchNormalization");
        string ulps = convs == 0 ? "n/a | n/a" : $"{maxUlp:F2} | {meanUlp:F3}";
        Line($"| ResNet-50 shape, {label} | {which} | {maxAbs:G3} | {rel:G3} | {ulps} | {bnLeft} |");
    }
}
Line();

// ---- 5. checker overhead ---------------------------------------------------------------------------------------
Line("## The checker's own work vs the two ORT runs (ResNet-50 shape, original vs folded, intermediates compared)");
Line();
{
    var reference = OnnxModel.Load(resnet50);
    var candidate = OnnxModel.Load(folded50);
    var shared = SharedTensors.Names(reference, candidate);
    using var a = SharedTensors.Runner(reference, shared, OrtLevel.Disable);
    using var b = SharedTensors.Runner(candidate, shared, OrtLevel.Disable);
    var names = a.Outputs.Select(o => o.Name).ToList();
    double gen = 0, ortTime = 0, cmp = 0;
    var generator = new InputGenerator(a.Inputs, 0, new Dictionary<string, long[]> { ["input"] = [1, 3, 224, 224] });
    int iterations = quick ? 2 : 5;
    long elements = 0;
    for (int it = 0; it < iterations; it++)
    {
        List<NamedTensor> x = null!;
        gen += Time(() => x = generator.Generate(it));
        OrtOutputs e = null!, f = null!;
        ortTime += Time(() => { e = a.RunInPlace(x, names); f = b.RunInPlace(x, names); }); // as EquivalenceChecker runs them
        var byName = f.ToDictionary(t => t.Name);
        cmp += Time(() => Parallel.ForEach(e, t => Comparator.Compare(t, byName[t.Name]))); // as EquivalenceChecker does
        elements = e.Sum(t => t.Count);
        e.Dispose(); f.Dispose();
    }
    Line($"Per iteration: input generation {gen / iterations:F1} ms, comparison of {shared.Count + 1} tensors ({elements / 1e6:F1} M elements) {cmp / iterations:F1} ms, " +
         $"the two ORT runs {ortTime / iterations:F1} ms. Checker's own work = {(gen + cmp) / ortTime * 100:F1}% of the ORT runs (target < 10%).");
    Line();
}

// ---- 6. batch mode scaling -------------------------------------------------------------------------------------
Line("## Batch mode: a folder of 20 models (ResNet-50 shape at 1/4 width, ~1.6 M parameters each)");
Line();
{
    string dir = Path.Combine(outDir, "zoo");
    if (Directory.Exists(dir)) Directory.Delete(dir, true);
    Directory.CreateDirectory(dir);
    for (int i = 0; i < 20; i++) ModelFactory.Write(new ModelFactory(100 + i).ResNet50(4), Path.Combine(dir, $"m{i:D2}.onnx"));
    Line("| Jobs | Wall s |");
    Line("| ---: | ---: |");
    var wall = new Dictionary<int, double>();
    foreach (int jobs in new[] { 1, 2 })
    {
        string o = Path.Combine(outDir, $"zoo_out_{jobs}");
        if (Directory.Exists(o)) Directory.Delete(o, true);
        wall[jobs] = Median(Enumerable.Range(0, quick ? 1 : 3).Select(_ => Time(() => RunCli($"fold \"{dir}\" -o \"{o}\" --jobs {jobs} -q"))).ToList()) / 1000;
        Line($"| {jobs} | {wall[jobs]:F2} |");
    }
    Line();
    Line($"Speed-up with 2 jobs: {wall[1] / wall[2]:F2}× (2 cores; process start and the summary are serial).");
    Line();
}

// ---- 7. GroupNorm swap ----------------------------------------------------------------------------------------
Line("## GroupNorm: decomposed (torch at opset ≤ 17) vs GroupNormalization-21, ORT CPU at ORT_ENABLE_ALL, one thread");
Line();
{
    string swapped = Path.Combine(outDir, "groupnorm_net.swapped.onnx");
    var m = OnnxModel.Load(gnNet);
    var r = Folding.Fold(m, new PipelineOptions { SwapGroupNorm = true, TargetOpset = 21 });
    ModelWriter.Save(m, swapped);
    Line($"12 × (Conv 64→64 3×3 → GroupNorm(32 groups) → ReLU) on 1×64×32×32; {r.Log.Count(Outcome.Replaced)} GroupNorms swapped.");
    Line();
    Line("| Model | Session ms | Latency median ms | p90 ms |");
    Line("| --- | ---: | ---: | ---: |");
    var x = new InputGenerator(new OrtRunner(gnNet).Inputs, 0).Generate(0);
    foreach (var (label, path) in new[] { ("decomposed", gnNet), ("GroupNormalization-21", swapped) })
    {
        OrtRunner? runner = null;
        double session = Time(() => runner = new OrtRunner(path, OrtLevel.All, intraOpThreads: 1));
        for (int i = 0; i < 3; i++) runner!.Run(x);
        var t = Enumerable.Range(0, runs).Select(_ => Time(() => runner!.Run(x))).ToList();
        runner!.Dispose();
        Line($"| {label} | {session:F0} | {Median(t):F2} | {Percentile(t, 0.9):F2} |");
    }
    Line();
}

File.WriteAllText(Path.Combine(outDir, "results.md"), md.ToString());
Console.Error.WriteLine($"written {Path.Combine(outDir, "results.md")}");
return 0;

// ---- helpers ---------------------------------------------------------------------------------------------------
/// <summary>The float16 scaling kernel alone, on a warm 512 K-element buffer of weight-like values: ns per element.</summary>
// Peak memory of `normfold fold` (given normfold.dll, e.g. an older build's) on a ResNet-50-shaped model stored as
// float_data and as raw_data, medians of 3 child processes.
static int FloatDataMemory(string outDir, string normfold)
{
    Directory.CreateDirectory(outDir);
    var m = new ModelFactory(7).ResNet50();
    string raw = Path.Combine(outDir, "resnet50.onnx"), typed = Path.Combine(outDir, "resnet50_float_data.onnx");
    ModelFactory.Write(m, raw);
    ModelFactory.Write(ModelFactory.ToFloatData(m), typed);
    Console.WriteLine($"normfold: {normfold}");
    Console.WriteLine($"runtime only (--version): {PeakRssOf(normfold, "--version") / 1024.0:F0} MB");
    Console.WriteLine("| Weights stored as | Model MB | Peak RSS MB | Peak / model |");
    Console.WriteLine("| --- | ---: | ---: | ---: |");
    foreach (var (name, path) in new[] { ("raw_data", raw), ("float_data", typed) })
    {
        string output = Path.Combine(outDir, "peak_out.onnx");
        var peaks = Enumerable.Range(0, 3).Select(_ => { File.Delete(output); return PeakRssOf(normfold, $"fold \"{path}\" -o \"{output}\" -q"); }).Order().ToList();
        long size = new FileInfo(path).Length;
        Console.WriteLine($"| {name} | {size / 1e6:F1} | {peaks[1] / 1024.0:F0} | {peaks[1] * 1024.0 / size:F2}× |");
    }
    return 0;
}

static int HalfKernel()
{
    var rng = new Random(1);
    var src = Enumerable.Range(0, 1 << 19).Select(_ => BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 0.2 - 0.1))).ToArray();
    var dst = new ushort[src.Length];
    for (int round = 0; round < 5; round++)
    {
        var sw = Stopwatch.StartNew();
        for (int k = 0; k < 50; k++) NormFold.Tensors.HalfVector.ScaleRun(src, dst, 1.0 + k * 1e-3);
        Console.WriteLine($"{sw.Elapsed.TotalMilliseconds * 1e6 / (50.0 * src.Length):F2} ns per element");
    }
    return 0;
}

/// <summary>Time of the weight arithmetic alone over every initializer of rank ≥ 2.</summary>
static int Scaling(string path)
{
    var m = OnnxModel.Load(path);
    var weights = m.Proto.Graph.Initializer.Where(t => t.Dims.Count >= 2).ToList();
    for (int i = 0; i < 5; i++)
    {
        var sw = Stopwatch.StartNew();
        long n = 0;
        foreach (var w in weights)
        {
            var s = Enumerable.Repeat(1.001, (int)w.Dims[0]).ToArray();
            n += NormFold.Tensors.ChannelScaling.Scale(m, w, new NormFold.Tensors.ChannelLayout.Rows(), s).Count;
        }
        Console.WriteLine($"scaled {n / 1e6:F0} MB in {sw.Elapsed.TotalMilliseconds:F0} ms");
        sw.Restart();
        foreach (var w in weights) m.ReadDoubles(w);
        Console.WriteLine($"  read as doubles in {sw.Elapsed.TotalMilliseconds:F0} ms");
    }
    return 0;
}

/// <summary>§5 alone, per iteration: ORT runs (outputs left in ORT's buffers), comparison, and the old copy-out.</summary>
/// <summary>ResNet-50 at 1/8 width with dynamic spatial dims (bind 1x3x1024x1024): large activations, small weights.</summary>
static int LargeActivations(string path)
{
    var m = new ModelFactory(1).ResNet50(8);
    foreach (int d in new[] { 2, 3 }) { var dim = m.Graph.Input[0].Type.TensorType.Shape.Dim[d]; dim.ClearDimValue(); dim.DimParam = d == 2 ? "H" : "W"; }
    ModelFactory.Write(m, path);
    return 0;
}

static int Checker(string path, int iterations)
{
    string folded = Path.Combine(ScratchDir(), "checker_folded.onnx");
    Folding.FoldFile(path, folded);
    using var reference = OnnxModel.Load(path);
    using var candidate = OnnxModel.Load(folded);
    var shared = SharedTensors.Names(reference, candidate);
    using var a = SharedTensors.Runner(reference, shared, OrtLevel.Disable);
    using var b = SharedTensors.Runner(candidate, shared, OrtLevel.Disable);
    var names = a.Outputs.Select(o => o.Name).ToList();
    var generator = new InputGenerator(a.Inputs, 0, new Dictionary<string, long[]> { ["input"] = [1, 3, 224, 224] });
    for (int it = 0; it < iterations; it++)
    {
        List<NamedTensor> x = null!;
        double gen = Time(() => x = generator.Generate(it));
        OrtOutputs e = null!, f = null!;
        double ort = Time(() => { e = a.RunInPlace(x, names); f = b.RunInPlace(x, names); });
        var byName = f.ToDictionary(t => t.Name);
        double cmp = Time(() => Parallel.ForEach(e, t => Comparator.Compare(t, byName[t.Name])));
        double copy = Time(() => { foreach (var t in e.Concat(f)) t.Data.ToArray(); });
        e.Dispose(); f.Dispose();
        Console.WriteLine($"gen {gen:F1} ort {ort:F0} compare {cmp:F0} ({(gen + cmp) / ort * 100:F1}%) | a copy-out would add {copy:F0}");
    }
    return 0;
}

/// <summary>Every sample of §1 for one model: floor, fold and ORT, interleaved.</summary>
static int FoldSamples(string path, int reps)
{
    string dir = ScratchDir(), tmp = Path.Combine(dir, "samples_tmp.onnx");
    for (int i = 0; i < reps; i++)
    {
        Fresh(tmp);
        double floor = Time(() =>
        {
            ModelProto m;
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16)) m = ModelProto.Parser.ParseFrom(f);
            using (var o = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20)) m.WriteTo(o);
        });
        Fresh(Path.Combine(dir, "samples_folded.onnx"), Path.Combine(dir, "samples_folded.onnx.data"));
        double fold = Time(() => Folding.FoldFile(path, Path.Combine(dir, "samples_folded.onnx")));
        Fresh(Path.Combine(dir, "samples_ort.onnx"));
        double ort = Time(() =>
        {
            using var o = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC, OptimizedModelFilePath = Path.Combine(dir, "samples_ort.onnx") };
            using var s = new InferenceSession(path, o);
        });
        Console.WriteLine($"floor {floor:F0} fold {fold:F0} ort {ort:F0}");
    }
    return 0;
}

/// <summary>Where one fold's time goes: load, fold, save, and the protobuf floor, five times each.</summary>
static int Phases(string path)
{
    for (int i = 0; i < 8; i++)
    {
        GC.Collect(); GC.WaitForPendingFinalizers();
        var sw = Stopwatch.StartNew();
        var m = OnnxModel.Load(path);
        double load = sw.Elapsed.TotalMilliseconds;
        Folding.Fold(m, new PipelineOptions { DeferWeightArithmetic = true });
        double fold = sw.Elapsed.TotalMilliseconds - load;
        ModelWriter.Save(m, Path.Combine(ScratchDir(), "phases.onnx"));
        double save = sw.Elapsed.TotalMilliseconds - load - fold;
        var sw2 = Stopwatch.StartNew();
        SplicedWriter.Write(m, Stream.Null);
        double toNull = sw2.Elapsed.TotalMilliseconds; sw2.Restart();
        using (var fs = new FileStream(Path.Combine(ScratchDir(), "phases3.onnx"), FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20)) SplicedWriter.Write(m, fs);
        double toFile = sw2.Elapsed.TotalMilliseconds; sw2.Restart();
        File.Delete(Path.Combine(ScratchDir(), "phases3.onnx"));
        double delete = sw2.Elapsed.TotalMilliseconds;
        Console.Write($"[null {toNull:F0} file {toFile:F0} delete {delete:F0}] ");
        m.Dispose();
        m = null;
        GC.Collect(); GC.WaitForPendingFinalizers();
        sw.Restart();
        ModelProto p;
        using (var f = File.OpenRead(path)) p = ModelProto.Parser.ParseFrom(f);
        double parse = sw.Elapsed.TotalMilliseconds;
        using (var o = File.Create(Path.Combine(ScratchDir(), "phases2.onnx"))) p.WriteTo(o);
        double write = sw.Elapsed.TotalMilliseconds - parse;
        Console.WriteLine($"load {load:F2} fold {fold:F2} save {save:F2} | parse {parse:F2} write {write:F2} | gen0 {GC.CollectionCount(0)} gen2 {GC.CollectionCount(2)}");
    }
    return 0;
}

/// <summary>
/// Fold time of N standalone BNs (each becomes Mul + Add), side by side (x → BN_i → y_i) and in a chain
/// (x → BN → BN → … → y), with and without keeping standalone BNs; and N Conv → BN pairs in a chain. Every rewrite must
/// cost time independent of the graph's size.
/// </summary>
static int ManyBns(int[] sizes)
{
    // Wall time on a shared machine swings with other load; CPU time (all threads, GC included) is what the fold costs.
    Console.WriteLine("| BNs | layout | fold, Mul + Add: wall / CPU (s) | fold, BNs kept: wall / CPU (s) | nodes after |");
    Console.WriteLine("| ---: | --- | ---: | ---: | ---: |");
    foreach (int n in sizes)
        foreach (var layout in new[] { "side by side", "chain", "Conv → BN chain" })
        {
            var proto = ManyBnModel(n, layout);
            string Time(bool keep, out int nodes)
            {
                var m = new OnnxModel(proto.Clone(), null);
                GC.Collect();
                var self = Process.GetCurrentProcess();
                var cpu = self.TotalProcessorTime;
                var sw = Stopwatch.StartNew();
                Folding.Fold(m, new PipelineOptions { KeepStandaloneBatchNorm = keep });
                double t = sw.Elapsed.TotalSeconds;
                self.Refresh();
                nodes = m.Proto.Graph.Node.Count;
                return $"{t:F2} / {(self.TotalProcessorTime - cpu).TotalSeconds:F2}";
            }
            string replaced = Time(false, out int after);
            string kept = Time(true, out _);
            Console.WriteLine($"| {n} | {layout} | {replaced} | {kept} | {after} |");
        }
    return 0;
}

static ModelProto ManyBnModel(int n, string layout)
{
    var g = new GraphProto { Name = "many_bns" };
    ValueInfoProto V(string name) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = 1, Shape = new TensorShapeProto { Dim = { new TensorShapeProto.Types.Dimension { DimValue = 1 }, new TensorShapeProto.Types.Dimension { DimValue = 4 } } } } },
    };
    TensorProto T(string name, long[] dims, float v) { var t = new TensorProto { Name = name, DataType = 1, Dims = { dims } }; for (long i = 0; i < dims.Aggregate(1L, (a, b) => a * b); i++) t.FloatData.Add(v + i * 0.01f); return t; }
    g.Input.Add(V("x"));
    foreach (var (p, v) in new[] { ("gamma", 1.1f), ("beta", 0.1f), ("mean", 0.2f), ("var", 0.9f) }) g.Initializer.Add(T(p, [4], v));
    if (layout == "Conv → BN chain")
    {
        g.Input[0] = V("x");
        g.Input[0].Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 3 });
        g.Initializer.Add(T("w", [4, 4, 1], 0.5f));
    }
    string prev = "x";
    for (int i = 0; i < n; i++)
    {
        string input = layout == "side by side" ? "x" : prev;
        if (layout == "Conv → BN chain")
        {
            g.Node.Add(new NodeProto { Name = $"conv{i}", OpType = "Conv", Input = { input, "w" }, Output = { $"c{i}" } });
            input = $"c{i}";
        }
        string y = $"y{i}";
        g.Node.Add(new NodeProto { Name = $"bn{i}", OpType = "BatchNormalization", Input = { input, "gamma", "beta", "mean", "var" }, Output = { y } });
        if (layout == "side by side") g.Output.Add(V(y));
        prev = y;
    }
    if (layout != "side by side") { var o = V(prev); if (layout == "Conv → BN chain") o.Type.TensorType.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 3 }); g.Output.Add(o); }
    var model = new ModelProto { IrVersion = 8, Graph = g };
    model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 15 });
    return model;
}

static void Fresh(params string[] paths)
{
    foreach (var p in paths) if (File.Exists(p)) File.Delete(p);
}

/// <summary>Where the hidden modes write (never beside the model: tests/models must stay as committed).</summary>
static string ScratchDir()
{
    string dir = Path.Combine(Path.GetTempPath(), "normfold-bench");
    Directory.CreateDirectory(dir);
    return dir;
}

static double Time(Action a)
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    var sw = Stopwatch.StartNew();
    a();
    return sw.Elapsed.TotalMilliseconds;
}

static double Median(List<double> v) => Percentile(v, 0.5);

static double Percentile(List<double> v, double p)
{
    var s = v.Order().ToList();
    return s[Math.Clamp((int)Math.Ceiling(p * s.Count) - 1, 0, s.Count - 1)];
}

/// <summary>Folded Conv weights of <paramref name="folded"/> against the exact fold of <paramref name="original"/>'s
/// Conv → BN pairs (matched by Conv node name), in ulps of the stored type.</summary>
static (double Max, double Mean, int Convs) WeightUlps(string original, string folded)
{
    var o = OnnxModel.Load(original);
    var f = OnnxModel.Load(folded);
    var oi = new NormFold.Graph.GraphIndex(o.Proto.Graph, o);
    var fi = new NormFold.Graph.GraphIndex(f.Proto.Graph, f);
    var foldedConvs = f.Proto.Graph.Node.Where(n => n.OpType == "Conv").ToDictionary(n => n.Name);
    double max = 0, sum = 0;
    long count = 0;
    int convs = 0;
    foreach (var bn in o.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization"))
    {
        var conv = oi.Producer(bn.Input[0]);
        if (conv is null || !foldedConvs.TryGetValue(conv.Name, out var fc)) continue;
        if (NormFold.Rewriting.BatchNorm.BatchNormParameters.TryRead(oi, bn, out var p) != null) continue;
        // A fold that left the weight computed (e.g. ORT inserting Casts) has nothing to measure here.
        if (!oi.TryGetConstant(conv.Input[1], out var w, out _) || !fi.TryGetConstant(fc.Input[1], out var fw, out _)) continue;
        convs++;
        var exact = o.ReadDoubles(w);
        var got = f.ReadDoubles(fw);
        int perRow = exact.Length / p.Channels;
        int mantissa = w.DataType == NormFold.Tensors.ElementType.Float16 ? 10 : 23;
        for (int i = 0; i < exact.Length; i++)
        {
            double x = exact[i] * p.Scale[i / perRow];
            double ulp = Math.ScaleB(1.0, Math.Max(Math.ILogB(x), mantissa == 10 ? -14 : -126) - mantissa);
            double e = Math.Abs(got[i] - x) / ulp;
            max = Math.Max(max, e); sum += e; count++;
        }
    }
    return (max, count == 0 ? 0 : sum / count, convs);
}

static IEnumerable<string> ExternalFiles(string path)
{
    var m = OnnxModel.Load(path);
    return m.AllTensors().Where(OnnxModel.IsExternal).Select(m.ExternalPath).Distinct().ToList();
}

static long ModelBytes(string path)
{
    long n = new FileInfo(path).Length;
    var m = OnnxModel.Load(path);
    foreach (var f in m.AllTensors().Where(OnnxModel.IsExternal).Select(m.ExternalPath).Distinct()) n += new FileInfo(f).Length;
    return n;
}

long PeakRss(string arguments) => PeakRssOf(normfold, arguments);

static long PeakRssOf(string normfold, string arguments)
{
    var psi = new ProcessStartInfo("dotnet", $"\"{normfold}\" {arguments}") { RedirectStandardError = true, RedirectStandardOutput = true };
    psi.Environment["NORMFOLD_PEAK_RSS"] = "1";
    using var p = Process.Start(psi)!;
    p.StandardOutput.ReadToEnd();
    string err = p.StandardError.ReadToEnd();
    p.WaitForExit();
    var line = err.Split('\n').FirstOrDefault(l => l.StartsWith("peak_rss_kb=")) ?? throw new InvalidOperationException("no peak reported: " + err);
    return long.Parse(line["peak_rss_kb=".Length..]);
}

void RunCli(string arguments)
{
    var psi = new ProcessStartInfo("dotnet", $"\"{normfold}\" {arguments}") { RedirectStandardError = true, RedirectStandardOutput = true };
    using var p = Process.Start(psi)!;
    p.StandardOutput.ReadToEnd();
    p.StandardError.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0) throw new InvalidOperationException($"normfold {arguments} exited {p.ExitCode}");
}

static string FindRepo()
{
    var d = new DirectoryInfo(AppContext.BaseDirectory);
    while (d != null && !File.Exists(Path.Combine(d.FullName, "NormFold.sln"))) d = d.Parent;
    return d?.FullName ?? throw new InvalidOperationException("run from inside the NormFold repository");
}
