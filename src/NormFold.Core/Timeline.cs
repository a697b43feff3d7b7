using System.Diagnostics;

namespace NormFold;

/// <summary>For the benchmarks (NORMFOLD_PHASES=1): the time at which each step of a run ended, printed at exit.
/// Off, a mark costs one static read.</summary>
internal static class Timeline
{
    static readonly bool On = Environment.GetEnvironmentVariable("NORMFOLD_PHASES") == "1";
    static readonly List<(string Step, long At, long Allocated)> Marks = [];
    static readonly long Start = Stopwatch.GetTimestamp();

    public static void Mark(string step)
    {
        if (!On) return;
        long now = Stopwatch.GetTimestamp();
        long allocated = GC.GetTotalAllocatedBytes();
        lock (Marks) Marks.Add((step, now, allocated));
    }

    /// <summary>"step=ms/KiB …": each step's own time and managed allocation, from the previous mark (the first from
    /// the first mark's class load).</summary>
    public static string? Report()
    {
        if (!On) return null;
        var parts = new List<string>();
        long previous = Start, allocatedBefore = 0;
        lock (Marks)
            foreach (var (step, at, allocated) in Marks)
            {
                parts.Add($"{step}={Stopwatch.GetElapsedTime(previous, at).TotalMilliseconds:F2}/{(allocated - allocatedBefore) / 1024}");
                (previous, allocatedBefore) = (at, allocated);
            }
        return "phases_ms/KiB " + string.Join(' ', parts);
    }
}
