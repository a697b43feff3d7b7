using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace NormFold.Bench;

/// <summary>
/// Whole-process timings (BENCHMARKS.md, "Whole process"): each tool started as a process, as a user or a CI job runs
/// it, start-up included. Publishes what it times (native and JIT normfold, the protobuf floor both ways), builds ONNX
/// Runtime's optimise-and-dump as a C program, runs every command in turn round after round (machine drift hits each
/// alike), and reports medians and the median of the per-round ratios.
/// Usage: dotnet run --project bench/NormFold.Bench -c Release -- --process [--runs N] [--no-publish] [--prepare] [--out DIR]
/// </summary>
static class ProcessBench
{
    sealed record Tool(string Label, string File, Func<string, string, string[]> Args);

    public static int Run(string repo, string outDir, int runs, bool publish, bool prepareOnly = false)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        string rid = RuntimeInformation.RuntimeIdentifier;
        string dir = Path.Combine(outDir, "process");
        Directory.CreateDirectory(dir);
        string native = Path.Combine(dir, "native"), jit = Path.Combine(dir, "jit");
        string floorNative = Path.Combine(dir, "floor-native"), floorJit = Path.Combine(dir, "floor-jit");
        if (publish)
        {
            Console.Error.WriteLine("publishing…");
            Publish(repo, "src/NormFold.Cli", rid, native, "");
            Publish(repo, "src/NormFold.Cli", rid, jit, "-p:PublishAot=false");
            Publish(repo, "bench/NormFold.Floor", rid, floorNative, "-p:PublishAot=true");
            Publish(repo, "bench/NormFold.Floor", rid, floorJit, "-p:PublishReadyToRun=true");
        }
        string ort = BuildOrtOptimize(repo, dir, rid);

        var models = new List<(string Name, string Path)>();
        foreach (int divisor in new[] { 6, 2, 1 })
        {
            string path = Path.Combine(dir, $"resnet50_w{divisor}.onnx");
            if (!File.Exists(path)) ModelFactory.Write(new ModelFactory(7).ResNet50(divisor), path);
            models.Add((divisor == 1 ? "ResNet-50 shape" : $"ResNet-50 shape, 1/{divisor} width", path));
        }

        string exe = OperatingSystem.IsWindows() ? ".exe" : "";
        var tools = new List<Tool>
        {
            new("native", Path.Combine(native, "normfold" + exe), (i, o) => ["fold", i, "-o", o, "-q"]),
            new("JIT (ReadyToRun)", Path.Combine(jit, "normfold" + exe), (i, o) => ["fold", i, "-o", o, "-q"]),
            new("floor native", Path.Combine(floorNative, "NormFold.Floor" + exe), (i, o) => [i, o]),
            new("floor JIT", Path.Combine(floorJit, "NormFold.Floor" + exe), (i, o) => [i, o]),
            new("ORT", ort, (i, o) => [i, o]),
        };
        if (prepareOnly)
        {
            // The commands, for timing from outside (e.g. /usr/bin/time -v); each needs its output deleted first.
            foreach (var (_, path) in models)
                foreach (var t in tools)
                    Console.WriteLine($"{t.File} {string.Join(' ', t.Args(path, Path.Combine(dir, "out.onnx")))}");
            return 0;
        }

        Console.WriteLine($"## Whole process: `normfold fold` vs ONNX Runtime's optimise-and-dump and the protobuf floor");
        Console.WriteLine();
        Console.WriteLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, {rid}. " +
                          $"Wall ms from start to exit, median of {runs} rounds (after one warm-up round), the commands in turn in each round; ratios are medians of the per-round ratios.");
        Console.WriteLine();
        Console.WriteLine("| Model | MB | fold native | fold JIT | floor native | floor JIT | ORT optimise+dump | ORT / fold native | fold native / floor native | fold JIT / floor JIT |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (name, path) in models)
        {
            string o = Path.Combine(dir, "out.onnx");
            var times = Rounds(runs, tools.Select(t => (Func<double>)(() => { Fresh(o); return Time(t.File, t.Args(path, o)); })).ToList());
            double[] m = times.Select(Median).ToArray();
            Console.WriteLine($"| {name} | {new FileInfo(path).Length / 1e6:F1} | {m[0]:F0} | {m[1]:F0} | {m[2]:F0} | {m[3]:F0} | {m[4]:F0} | " +
                              $"{PairedRatio(times[4], times[0]):F1}× | {PairedRatio(times[0], times[2]):F2}× | {PairedRatio(times[1], times[3]):F2}× |");
            Fresh(o);
        }
        Console.WriteLine();
        var help = Rounds(runs * 3, tools.Take(2).Select(t => (Func<double>)(() => Time(t.File, ["--help"]))).ToList());
        Console.WriteLine($"`normfold --help`: native {Median(help[0]):F1} ms, JIT (ReadyToRun) {Median(help[1]):F1} ms (median of {runs * 3}).");
        return 0;
    }

    /// <summary>One warm-up round, then <paramref name="runs"/> rounds of every command in turn.</summary>
    static List<List<double>> Rounds(int runs, List<Func<double>> commands)
    {
        var times = commands.Select(_ => new List<double>()).ToList();
        for (int r = -1; r < runs; r++)
            for (int c = 0; c < commands.Count; c++)
            {
                double ms = commands[c]();
                if (r >= 0) times[c].Add(ms);
            }
        return times;
    }

    static double Time(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        double ms = clock.Elapsed.TotalMilliseconds;
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {stderr}{stdout.Result}");
        return ms;
    }

    static void Publish(string repo, string project, string rid, string output, string extra)
    {
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        var psi = new ProcessStartInfo("dotnet", $"publish {project} -c Release -r {rid} -o \"{output}\" {extra}")
            { WorkingDirectory = repo, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"dotnet publish {project} failed:\n{stdout.Result}{stderr}");
    }

    /// <summary>bench/probe/ort_optimize.c against the ORT package's headers and library for this RID.</summary>
    static string BuildOrtOptimize(string repo, string dir, string rid)
    {
        string package = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"), "microsoft.ml.onnxruntime", "1.31.1");
        string lib = Path.Combine(package, "runtimes", rid, "native");
        // The library's SONAME is libonnxruntime.so.1; the package ships it as libonnxruntime.so.
        string libDir = Path.Combine(dir, "ort-lib");
        Directory.CreateDirectory(libDir);
        string soname = Path.Combine(libDir, "libonnxruntime.so.1");
        if (File.Exists(soname)) File.Delete(soname);
        File.CreateSymbolicLink(soname, Path.Combine(lib, "libonnxruntime.so"));
        string exe = Path.Combine(dir, "ort_optimize");
        var psi = new ProcessStartInfo("cc") { RedirectStandardError = true };
        foreach (var a in new[] { "-O2", "-I", Path.Combine(package, "build", "native", "include"), Path.Combine(repo, "bench", "probe", "ort_optimize.c"),
                     "-L", lib, "-lonnxruntime", $"-Wl,-rpath,{libDir}", "-o", exe })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"cc ort_optimize.c failed: {err}");
        return exe;
    }

    static void Fresh(string path)
    {
        if (File.Exists(path)) File.Delete(path);
        if (File.Exists(path + ".data")) File.Delete(path + ".data");
    }

    static double Median(List<double> v)
    {
        var s = v.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }

    static double PairedRatio(List<double> a, List<double> b) => Median(a.Zip(b, (x, y) => x / y).ToList());
}
