using NormFold.Cli;

int code = Cli.Run(args, Console.Out);
// For the benchmarks: peak resident memory of this process, as the kernel counted it.
if (Environment.GetEnvironmentVariable("NORMFOLD_PEAK_RSS") == "1" && File.Exists("/proc/self/status"))
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmHWM:")) Console.Error.WriteLine("peak_rss_kb=" + line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
return code;
