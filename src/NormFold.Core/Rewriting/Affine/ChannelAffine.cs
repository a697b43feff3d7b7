namespace NormFold.Rewriting.Affine;

/// <summary>
/// y = Scale·x + Shift per channel, in double. An array of length 1 holds one value for every channel (a scalar).
/// Composition: first (a₁, b₁) then (a₂, b₂) is y = a₂·(a₁·x + b₁) + b₂ = (a₂a₁)·x + (a₂b₁ + b₂).
/// </summary>
internal sealed record ChannelAffine(double[] Scale, double[] Shift)
{
    public static ChannelAffine Identity { get; } = new([1.0], [0.0]);

    /// <summary>1 when every array is a scalar, else the channel count.</summary>
    public int Channels => Math.Max(Scale.Length, Shift.Length);

    public ChannelAffine Then(ChannelAffine next)
    {
        int n = Math.Max(Channels, next.Channels);
        var a = new double[n];
        var b = new double[n];
        for (int c = 0; c < n; c++)
        {
            double a2 = At(next.Scale, c);
            a[c] = a2 * At(Scale, c);
            b[c] = a2 * At(Shift, c) + At(next.Shift, c);
        }
        return new ChannelAffine(a, b);
    }

    /// <summary>The scale for each of <paramref name="channels"/> channels (a scalar repeated).</summary>
    public double[] ScaleFor(long channels) => Expand(Scale, channels);
    public double[] ShiftFor(long channels) => Expand(Shift, channels);

    /// <summary>True unless every scale is exactly 1.</summary>
    public bool Scales => Scale.Any(v => v != 1.0);
    /// <summary>True unless every shift is exactly 0.</summary>
    public bool Shifts => Shift.Any(v => v != 0.0);

    /// <summary>Index and value of the first scale or shift that is NaN or infinite, or null.</summary>
    public string? FirstNonFinite()
    {
        int i = Array.FindIndex(Scale, v => !double.IsFinite(v));
        if (i >= 0) return $"scale[{i}] = {Scale[i]}";
        i = Array.FindIndex(Shift, v => !double.IsFinite(v));
        return i >= 0 ? $"shift[{i}] = {Shift[i]}" : null;
    }

    /// <summary>The first scale or shift not finite once rounded to <paramref name="type"/>, described.</summary>
    public string FirstNotFiniteIn(int type)
    {
        if (FoldedValues.FirstNotFinite(Scale, type) is { } i) return $"scale[{i}] = {Scale[i]:G6}";
        return FoldedValues.FirstNotFinite(Shift, type) is { } j ? $"shift[{j}] = {Shift[j]:G6}" : "value";
    }

    static double At(double[] v, int c) => v.Length == 1 ? v[0] : v[c];

    static double[] Expand(double[] v, long channels) =>
        v.Length == channels ? v : Enumerable.Repeat(v[0], (int)channels).ToArray();
}
