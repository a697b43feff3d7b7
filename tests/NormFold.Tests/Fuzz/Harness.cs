using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Google.Protobuf;

namespace NormFold.Tests.Fuzz;

/// <summary>How one CLI run ended. Everything from <see cref="InternalError"/> on is a defect.</summary>
public enum Outcome
{
    Exit0Equivalent, Exit0, Exit0InputNotRunnable, Exit0RangeEdge, Exit2, Exit2RangeEdge, Exit3, Exit4,
    InternalError, Crash, Hang, StackTrace, MultiLineError, UnnamedError, LeftFiles, ModifiedInput, ReadOutside,
    SilentlyWrong, BrokenOutput, FalseAlarm, FalsePass, UnexpectedExit,
}

public sealed record RunResult(FuzzCase Case, RunKind Kind, Outcome Outcome, int Exit, string Detail, string[] Args, TimeSpan Took)
{
    public bool Bad => Outcome >= Outcome.InternalError;

    public string Repro => $"[{Case}] {Kind}: {Outcome} (exit {Exit}) {Detail}\n    repro: NORMFOLD_FUZZ_CASE={Case.Id} " +
        "dotnet test tests/NormFold.Tests -c Release --filter FullyQualifiedName~StructureFuzzTests.Hostile --logger \"console;verbosity=detailed\"" +
        $"\n    command: normfold {string.Join(' ', Args.Select(a => a.Contains(' ') || a.Length == 0 ? $"'{a}'" : a))}";
}

/// <summary>
/// Writes a case into its own folder (model folder, output folder, a canary file and a folder outside the model's
/// folder), runs the CLI on it — in this process with a timeout, or as a child process for cases that could kill it —
/// and classifies every run: an allowed outcome, or the defect it shows.
/// </summary>
public sealed class Harness(string root)
{
    /// <summary>Compare exit-0 outputs with the input in ORT for every case whose seed is a multiple of this.</summary>
    public int OracleEvery { get; init; } = 1;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);
    public bool KeepFolders { get; init; }
    static readonly byte[][] Secrets = [Encoding.ASCII.GetBytes("NFCANARY"), Encoding.ASCII.GetBytes("root:x:0:0"), Encoding.ASCII.GetBytes("PATH=/")];

    public CaseDirs Prepare(FuzzCase c)
    {
        string dir = Path.Combine(root, c.Id.Replace(':', '-'));
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        var d = new CaseDirs(dir, Path.Combine(dir, "model"), Path.Combine(dir, "out"), Path.Combine(dir, "outside"), Path.Combine(dir, "canary.bin"));
        Directory.CreateDirectory(d.Model);
        Directory.CreateDirectory(d.Out);
        Directory.CreateDirectory(d.Outside);
        File.WriteAllBytes(d.Canary, Families.Canary(1 << 20));
        byte[] bytes = c.Model.ToByteArray();
        File.WriteAllBytes(d.Subject, bytes);
        File.WriteAllBytes(d.Twin, bytes);
        if (c.Other != null) File.WriteAllBytes(d.Other, c.Other.ToByteArray());
        foreach (var s in c.Setup) s(d);
        return d;
    }

    /// <summary>Appends "start"/"end" per case, to find the case a killed or wedged run was on.</summary>
    public string? TraceFile { get; init; }

    void Trace(string line)
    {
        if (TraceFile != null) lock (this) File.AppendAllText(TraceFile, $"{DateTime.UtcNow:HH:mm:ss.fff} {line}\n");
    }

    public List<RunResult> Run(FuzzCase c)
    {
        Trace("start " + c);
        var d = Prepare(c);
        var results = new List<RunResult>();
        try
        {
            var before = Snapshot(d.Model);
            var outsideBefore = Snapshot(d.Outside);
            bool sampled = c.Seed % OracleEvery == 0 && !c.SkipOracle;
            Oracle.Result? foldVerdict = null;
            string foldOut = "";
            int i = 0;
            foreach (var kind in c.Runs)
            {
                string outDir = Path.Combine(d.Out, $"{i++}-{kind}");
                Directory.CreateDirectory(outDir);
                if (kind is RunKind.Fold or RunKind.FoldCheck) foreach (var f in c.OutputFolders) Directory.CreateDirectory(Path.Combine(outDir, f));
                string output = Path.Combine(outDir, kind == RunKind.FoldFolder ? "subject.onnx" : "folded.onnx");
                var fold = c.FoldOptions.Select(o => o.Replace("{outside}", d.Outside));
                string[] args = kind switch
                {
                    RunKind.Fold => ["fold", d.Subject, "-o", output, .. c.Options, .. fold],
                    RunKind.FoldFolder => ["fold", d.Model, "-o", outDir, "--jobs", "2", .. c.Options, .. fold],
                    RunKind.FoldCheck => ["fold", d.Subject, "-o", output, "--check", .. c.Options, .. fold, .. c.CheckOptions, .. ShapeBindings(c)],
                    RunKind.Inspect => ["inspect", d.Subject, .. c.Options],
                    RunKind.CheckTwin => ["check", d.Subject, d.Twin, .. c.CheckOptions, .. ShapeBindings(c)],
                    _ => ["check", d.Subject, d.Other, .. c.CheckOptions, .. ShapeBindings(c)],
                };
                Trace($"  {kind}");
                var sw = Stopwatch.StartNew();
                var (code, err, timedOut) = c.Risky ? Child(args, c.Timeout ?? TimeSpan.FromSeconds(60)) : InProcess(args, c.Timeout ?? Timeout);
                sw.Stop();
                var (outcome, detail) = Classify(c, d, kind, code, err, timedOut, outDir, output);
                if (outcome == Outcome.Exit0 && kind is RunKind.Fold or RunKind.FoldCheck or RunKind.FoldFolder && sampled)
                {
                    var v = Oracle.Compare(d.Subject, output, c.Seed, c.FeedInitializers);
                    if (kind == RunKind.Fold) { foldVerdict = v; foldOut = output; }
                    (outcome, detail) = v.Verdict switch
                    {
                        Oracle.Verdict.Equivalent => (Outcome.Exit0Equivalent, ""),
                        Oracle.Verdict.NotRunnable => (Outcome.Exit0InputNotRunnable, v.Detail),
                        Oracle.Verdict.OverflowEdge or Oracle.Verdict.UnderflowEdge => (Outcome.Exit0RangeEdge, v.Detail),
                        Oracle.Verdict.Different => (Outcome.SilentlyWrong, v.Detail),
                        _ => (Outcome.BrokenOutput, "the input runs in ORT, the output does not: " + v.Detail),
                    };
                }
                else if (outcome == Outcome.Exit0 && kind == RunKind.Fold) foldOut = output;
                if (outcome == Outcome.Exit2 && kind == RunKind.FoldCheck && !c.SkipOracle && foldOut.Length > 0)
                {
                    foldVerdict ??= Oracle.Compare(d.Subject, foldOut, c.Seed, c.FeedInitializers);
                    (outcome, detail) = FailedCheck(foldVerdict, d.Subject, detail);
                }
                if (kind == RunKind.FoldFolder && outcome < Outcome.InternalError && results.FirstOrDefault(x => x.Kind == RunKind.Fold) is { } alone &&
                    alone.Exit != code && !c.FoldOptions.Contains("--external-data-file"))
                    (outcome, detail) = (Outcome.UnexpectedExit, $"a folder of the model and its twin: exit {code}, the model alone: exit {alone.Exit}; {detail}");
                var after = Snapshot(d.Model);
                if (outcome < Outcome.InternalError && !SameSnapshot(before, after, out string diff))
                    (outcome, detail) = (Outcome.ModifiedInput, diff);
                if (outcome < Outcome.InternalError && StrayWrites(d, outsideBefore) is { Count: > 0 } stray)
                    (outcome, detail) = (Outcome.LeftFiles, "written outside the output's folder: " + string.Join(", ", stray));
                results.Add(new RunResult(c, kind, outcome, code, detail, args, sw.Elapsed));
            }
        }
        finally
        {
            Trace("end " + c.Id);
            if (!KeepFolders) try { Directory.Delete(d.Root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return results;
    }

    /// <summary>A failed check of a fold our own judge finds exact (to 1e-5 of the output's magnitude, finite) is a false
    /// alarm — unless the model's own constants come within 2^8 of the range's largest value: the check's inputs are
    /// not the judge's, and on them the original may overflow where the fold (which composes the constants first)
    /// does not (affine:8000423: x·k·(−3e38)·0 is NaN in the original once x·k·(−3e38) overflows, 0 in the fold).</summary>
    internal static (Outcome, string) FailedCheck(Oracle.Result foldVerdict, string original, string error)
    {
        if (foldVerdict is not { Verdict: Oracle.Verdict.Equivalent, Tight: true, ReferenceFinite: true }) return (Outcome.Exit2, error);
        if (Oracle.ConstantsNearRangeEdge(original)) return (Outcome.Exit2RangeEdge, "constants at the range's edge; " + error);
        return (Outcome.FalseAlarm, "plain fold output is equivalent to 1e-5; " + error);
    }

    /// <summary>Binds every symbolic input dim to 2 so that `--check` can run dynamic models.</summary>
    static IEnumerable<string> ShapeBindings(FuzzCase c)
    {
        foreach (var i in c.Model.Graph.Input)
        {
            var shape = i.Type?.TensorType?.Shape;
            if (shape == null || shape.Dim.All(x => x.HasDimValue) || c.Model.Graph.Initializer.Any(t => t.Name == i.Name)) continue;
            if (i.Name.Contains(':') || i.Name.Length == 0 || c.Model.Graph.Input.Count(x => x.Name == i.Name) > 1) continue;
            yield return "--shape";
            yield return i.Name + ":" + string.Join('x', shape.Dim.Select(x => x.HasDimValue ? x.DimValue : 2));
        }
    }

    (Outcome, string) Classify(FuzzCase c, CaseDirs d, RunKind kind, int code, string err, bool timedOut, string outDir, string output)
    {
        err = ProgressLine.Replace(err, ""); // a check's progress (after 1 s, one line per stage) is not the error
        string first = FirstLine(err);
        if (timedOut) return (Outcome.Hang, $"no exit after {(c.Timeout ?? Timeout).TotalSeconds:0} s{(c.Risky ? " of CPU time (or 4× that of wall time)" : "")}");
        bool requireAll = kind is RunKind.Fold or RunKind.FoldCheck or RunKind.FoldFolder or RunKind.Inspect && c.Options.Contains("--require-all-folded");
        if (code is < 0 or > 4 || (code == 4 && !requireAll)) return (Outcome.Crash, $"exit {code}: {first}");
        if (code == 1) return (Outcome.InternalError, first);
        if (err.Contains("\n   at ") || err.Contains("Exception:") || err.Contains("Stack overflow")) return (Outcome.StackTrace, first);
        var written = Directory.EnumerateFileSystemEntries(outDir, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(outDir, p))
            .Where(p => !(kind is RunKind.Fold or RunKind.FoldCheck && c.OutputFolders.Contains(p))).ToList();
        var allowed = kind switch
        {
            RunKind.Fold or RunKind.FoldCheck => c.OutputFiles,
            RunKind.FoldFolder => ["subject.onnx", "subject.onnx.data", "twin.onnx", "twin.onnx.data"],
            _ => ["folded.onnx", "folded.onnx.data"],
        };
        if (code != 0 && written.Count > 0) return (Outcome.LeftFiles, $"exit {code} left {string.Join(", ", written)}");
        if (code == 4)
            return c.ExpectAllFolded ? (Outcome.UnexpectedExit, "exit 4 though every candidate can fold: " + first) : (Outcome.Exit4, first);
        if (code == 3)
        {
            var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            // A folder: one line per model that failed ("[1/2] subject.onnx: FAILED: …"), each naming its file.
            if (kind == RunKind.FoldFolder && lines.Length == 2 && lines.All(l => l.Contains("subject.onnx") || l.Contains("twin.onnx")))
                return (Outcome.Exit3, first);
            if (lines.Length != 1) return (Outcome.MultiLineError, $"{lines.Length} lines: {string.Join(" | ", lines.Take(3))}");
            string[] files = ["subject.onnx", "twin.onnx", "other.onnx", "folded.onnx"];
            // It names the user's file, a tensor/node/input in quotes, or (usage errors) the option; never a stand-in
            // for the file, a staging path, or .NET's own words ("(Parameter 'index')", "Key: x").
            bool names = files.Any(first.Contains) || first.Contains(" --") || QuotedName.IsMatch(first);
            if (!names || first.Contains("<in-memory") || first.Contains(".normfold-") || first.Contains("/normfold-check-") ||
                first.Contains("(Parameter '") || first.Contains("same key"))
                return (Outcome.UnnamedError, first);
            return (Outcome.Exit3, first);
        }
        if (code == 2)
        {
            if (kind is RunKind.Fold or RunKind.FoldFolder or RunKind.Inspect) return (Outcome.UnexpectedExit, "exit 2 without a check: " + first);
            if (kind == RunKind.CheckTwin || (kind == RunKind.CheckPair && c.Truth == PairTruth.Equivalent))
                return (Outcome.FalseAlarm, "identical models: " + first);
            return (Outcome.Exit2, first);
        }
        // Exit 0.
        if (c.Escapes && kind != RunKind.Inspect) return (Outcome.ReadOutside, $"exit 0 with data outside the model's folder ({c.Mutation})");
        foreach (var f in written)
        {
            string p = Path.Combine(outDir, f);
            if (!File.Exists(p)) continue;
            var bytes = File.ReadAllBytes(p);
            foreach (var s in Secrets)
                if (bytes.AsSpan().IndexOf(s) >= 0) return (Outcome.ReadOutside, $"{f} holds '{Encoding.ASCII.GetString(s)}'");
        }
        switch (kind)
        {
            case RunKind.Fold or RunKind.FoldCheck or RunKind.FoldFolder:
                if (!File.Exists(output)) return (Outcome.UnexpectedExit, "exit 0 but no output written");
                if (kind == RunKind.FoldFolder && !File.Exists(Path.Combine(outDir, "twin.onnx"))) return (Outcome.UnexpectedExit, "exit 0 but the twin not written");
                var extra = written.Where(f => !allowed.Contains(f)).ToList();
                if (extra.Count > 0) return (Outcome.LeftFiles, "beside the output: " + string.Join(", ", extra));
                break;
            case RunKind.Inspect:
                if (written.Count > 0) return (Outcome.LeftFiles, "inspect wrote " + string.Join(", ", written));
                break;
            case RunKind.CheckPair when c.Truth == PairTruth.Different:
                return (Outcome.FalsePass, $"models differ ({c.Mutation}) but check passed");
        }
        return (Outcome.Exit0, "");
    }

    static readonly System.Text.RegularExpressions.Regex QuotedName = new("'[^']+'");
    static readonly System.Text.RegularExpressions.Regex ProgressLine = new(@"^normfold: (check|fold): iteration \d+ of \d+[^\n]*\(\d+\.\d s\)\r?\n", System.Text.RegularExpressions.RegexOptions.Multiline);

    public static string FirstLine(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";

    // ---- running the CLI ----------------------------------------------------------------------------------------

    /// <summary>Console.Error for the CLI in this process, one writer per run (runs may overlap on two threads).</summary>
    sealed class ErrorRouter(TextWriter fallback) : TextWriter
    {
        public static readonly AsyncLocal<StringWriter?> Current = new();
        public override Encoding Encoding => Encoding.UTF8;
        TextWriter Target => (TextWriter?)Current.Value ?? fallback;
        public override void Write(char value) => Target.Write(value);
        public override void Write(string? value) => Target.Write(value);
        public override void WriteLine(string? value) => Target.WriteLine(value);
    }

    static readonly object RouterLock = new();
    static ErrorRouter? _router;

    /// <summary>Routes Console.Error per run until disposed.</summary>
    public static IDisposable RouteConsoleError()
    {
        lock (RouterLock)
        {
            var saved = Console.Error;
            _router = new ErrorRouter(saved);
            Console.SetError(_router);
            return new Restore(() => Console.SetError(saved));
        }
    }

    sealed class Restore(Action a) : IDisposable { public void Dispose() => a(); }

    (int, string, bool) InProcess(string[] args, TimeSpan timeout)
    {
        var task = Task.Factory.StartNew(() =>
        {
            var err = new StringWriter();
            ErrorRouter.Current.Value = err;
            try { return (NormFold.Cli.Cli.Run(args, new StringWriter()), err.ToString()); }
            catch (Exception e) { return (1, $"escaped Cli.Run: {e.GetType().Name}: {e.Message}"); }
        }, TaskCreationOptions.LongRunning);
        if (!task.Wait(timeout)) return (-1, "", true);
        var (code, text) = task.Result;
        return (code, text, false);
    }

    static string DotnetHost() =>
        Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

    static (int, string, bool) Child(string[] args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "normfold.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var outp = p.StandardOutput.ReadToEndAsync();
        if (!WaitOrHang(p, timeout))
        {
            try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            p.WaitForExit();
            return (-1, "", true);
        }
        p.WaitForExit();
        string text = err.Result;
        _ = outp.Result;
        return (p.ExitCode, text.Length > 20000 ? text[..20000] : text, false);
    }

    /// <summary>Waits for the child until it has used <paramref name="timeout"/> of CPU time (a loop) or four times that
    /// of wall time (a wait that never ends): a child starved by a loaded machine is slow, not hung (scale:m7001999, a
    /// 3,000-BN fold --check of 6 s CPU, passed 90 s of wall time at nice 15 under a load of 20). False: hung.</summary>
    internal static bool WaitOrHang(Process p, TimeSpan timeout)
    {
        var wall = Stopwatch.StartNew();
        while (!p.WaitForExit(TimeSpan.FromSeconds(1)))
        {
            TimeSpan? cpu; // unknown when the child exits (and is reaped) between the wait and the read: the next wait says so
            try { cpu = p.TotalProcessorTime; }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { cpu = null; }
            if (wall.Elapsed > timeout && (cpu > timeout || wall.Elapsed > 4 * timeout)) return false;
        }
        return true;
    }

    // ---- the model's folder, before and after ------------------------------------------------------------------

    internal static Dictionary<string, string> Snapshot(string dir)
    {
        var map = new Dictionary<string, string>();
        var stack = new Stack<string>();
        stack.Push(dir);
        while (stack.Count > 0)
        {
            var cur = stack.Pop();
            foreach (var e in new DirectoryInfo(cur).EnumerateFileSystemInfos())
            {
                string rel = Path.GetRelativePath(dir, e.FullName);
                if (e.LinkTarget != null) map[rel] = "link:" + e.LinkTarget;
                else if (e is DirectoryInfo) { map[rel] = "dir"; stack.Push(e.FullName); }
                else if (e.Name.StartsWith("fifo")) map[rel] = "fifo";
                else map[rel] = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(e.FullName)));
            }
        }
        return map;
    }

    /// <summary>What a run made outside its output folder: entries in the case's folder or the output folders' parent
    /// that are not the runs' folders, and any change to the outside folder.</summary>
    internal static List<string> StrayWrites(CaseDirs d, Dictionary<string, string> outsideBefore)
    {
        var known = new HashSet<string> { d.Model, d.Out, d.Outside, d.Canary };
        var stray = Directory.EnumerateFileSystemEntries(d.Root).Where(p => !known.Contains(p))
            .Concat(Directory.EnumerateFileSystemEntries(d.Out).Where(p => !Directory.Exists(p) || !RunDir.IsMatch(Path.GetFileName(p))))
            .Select(p => Path.GetRelativePath(d.Root, p)).ToList();
        if (!SameSnapshot(outsideBefore, Snapshot(d.Outside), out string diff)) stray.Add("outside: " + diff);
        return stray;
    }

    static readonly System.Text.RegularExpressions.Regex RunDir = new(@"^\d+-[A-Za-z]+$");

    static bool SameSnapshot(Dictionary<string, string> a, Dictionary<string, string> b, out string diff)
    {
        var changes = a.Keys.Union(b.Keys).Where(k => a.GetValueOrDefault(k) != b.GetValueOrDefault(k))
            .Select(k => !a.ContainsKey(k) ? "+" + k : !b.ContainsKey(k) ? "-" + k : "~" + k).ToList();
        diff = "model folder changed: " + string.Join(", ", changes);
        return changes.Count == 0;
    }
}

/// <summary>Runs many cases (two at a time) and tallies outcomes per family.</summary>
public static class Campaign
{
    public static List<RunResult> Run(IReadOnlyList<FuzzCase> cases, Harness h, int parallel = 2)
    {
        var bag = new ConcurrentBag<List<RunResult>>();
        using (Harness.RouteConsoleError())
            Parallel.ForEach(cases, new ParallelOptions { MaxDegreeOfParallelism = parallel }, c =>
            {
                try { bag.Add(h.Run(c)); }
                catch (Exception e)
                {
                    bag.Add([new RunResult(c, RunKind.Fold, Outcome.UnexpectedExit, -1, $"harness: {e.GetType().Name}: {e.Message}", [], TimeSpan.Zero)]);
                }
            });
        return bag.SelectMany(x => x).OrderBy(r => r.Case.Family).ThenBy(r => r.Case.Seed).ThenBy(r => r.Kind).ToList();
    }

    /// <summary>Counts per family and outcome, the slowest run per family, then every defect with its repro.</summary>
    public static string Summary(IReadOnlyList<RunResult> results, TimeSpan took)
    {
        var sb = new StringBuilder();
        var outcomes = Enum.GetValues<Outcome>().Where(o => results.Any(r => r.Outcome == o)).ToList();
        sb.AppendLine($"{results.Count} runs of {results.Select(r => r.Case.Id).Distinct().Count()} models in {took.TotalSeconds:0.0} s; " +
                      $"{results.Count(r => r.Bad)} defects");
        sb.Append($"{"family",-14}{"runs",6}");
        foreach (var o in outcomes) sb.Append($"{Short(o),10}");
        sb.AppendLine($"{"slowest",10}");
        foreach (var fam in results.GroupBy(r => r.Case.Family).OrderBy(g => g.Key))
        {
            sb.Append($"{fam.Key,-14}{fam.Count(),6}");
            foreach (var o in outcomes) sb.Append($"{fam.Count(r => r.Outcome == o),10}");
            sb.AppendLine($"{fam.Max(r => r.Took.TotalSeconds),9:0.0}s");
        }
        sb.Append($"{"total",-14}{results.Count,6}");
        foreach (var o in outcomes) sb.Append($"{results.Count(r => r.Outcome == o),10}");
        sb.AppendLine();
        sb.AppendLine("by command: " + string.Join(", ", results.GroupBy(r => r.Kind).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()} (mean {g.Average(r => r.Took.TotalMilliseconds):0} ms)")));
        foreach (var bad in results.Where(r => r.Bad).GroupBy(r => (r.Case.Family, r.Case.Mutation, r.Kind, r.Outcome)).Take(200))
            sb.AppendLine($"{bad.Count()}× " + bad.First().Repro);
        return sb.ToString();
    }

    static string Short(Outcome o) => o switch
    {
        Outcome.Exit0Equivalent => "0-equiv",
        Outcome.Exit0 => "0",
        Outcome.Exit0InputNotRunnable => "0-no-ort",
        Outcome.Exit0RangeEdge => "0-edge",
        Outcome.Exit2RangeEdge => "2-edge",
        Outcome.Exit2 => "2",
        Outcome.Exit3 => "3",
        Outcome.Exit4 => "4",
        _ => o.ToString()[..Math.Min(10, o.ToString().Length)],
    };
}
