using NormFold.Cli;

int code = Cli.Run(args, Console.Out);
NormFold.Timeline.Mark("output");
if (NormFold.Timeline.Report() is { } phases) Console.Error.WriteLine(phases);
// For the benchmarks: peak resident memory of this process, as the kernel counted it.
if (Environment.GetEnvironmentVariable("NORMFOLD_PEAK_RSS") == "1" && File.Exists("/proc/self/status"))
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmHWM:")) Console.Error.WriteLine("peak_rss_kb=" + line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
// For the start-up benchmarks: methods the JIT compiled (ReadyToRun code not used or missing) and its time.
if (Environment.GetEnvironmentVariable("NORMFOLD_JIT_STATS") == "1")
    Console.Error.WriteLine($"jit_methods={System.Runtime.JitInfo.GetCompiledMethodCount()} jit_ms={System.Runtime.JitInfo.GetCompilationTime().TotalMilliseconds:F0} " +
                            $"uptime_ms={(DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalMilliseconds:F0}");
// For the benchmarks: garbage collections by generation and their pause time.
if (Environment.GetEnvironmentVariable("NORMFOLD_GC_STATS") == "1")
    Console.Error.WriteLine($"gc0={GC.CollectionCount(0)} gc1={GC.CollectionCount(1)} gc2={GC.CollectionCount(2)} " +
                            $"gc_pause_ms={GC.GetTotalPauseDuration().TotalMilliseconds:F1} allocated_kb={GC.GetTotalAllocatedBytes() / 1024}");
return code;
