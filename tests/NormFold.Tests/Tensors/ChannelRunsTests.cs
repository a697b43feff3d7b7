using NormFold.Tensors;

namespace NormFold.Tests.Tensors;

public class ChannelRunsTests
{
    /// <summary>Each element's factor, from the runs, is s at the channel <see cref="ChannelLayout"/> documents for it.</summary>
    [Theory]
    [InlineData("rows", 6, 1, 1, 9)]
    [InlineData("transposed", 4, 3, 1, 4)]
    [InlineData("transposed", 6, 2, 3, 5)]   // groups: C_in 6, M/g 2, g 3
    [InlineData("inputs", 6, 4, 1, 9)]
    [InlineData("inputs", 6, 2, 3, 1)]       // groups: M 6, C/g 2, g 3 (depthwise-like, 1×1 kernel)
    public void Every_elements_factor_is_its_documented_channels(string kind, long a, long b, long groups, int kernel)
    {
        ChannelLayout layout = kind switch
        {
            "rows" => new ChannelLayout.Rows(),
            "transposed" => new ChannelLayout.TransposedConv(a, b, groups),
            _ => new ChannelLayout.ConvInputs(a, b, groups),
        };
        long count = kind == "rows" ? a * kernel : a * b * kernel;
        int channels = kind switch { "rows" => (int)a, "transposed" => (int)(b * groups), _ => (int)(b * groups) };
        var s = Enumerable.Range(0, channels).Select(c => 10.0 + c).ToArray();
        var runs = DeferredScaling.Runs.Of(count, layout, s);
        Assert.Equal(count, (long)runs.Count * runs.Length);
        for (long i = 0; i < count; i++)
        {
            long channel = kind switch
            {
                "rows" => i / kernel,
                // [C_in, M/g, k…]: element (i, j, …) → (i / (C_in/g))·(M/g) + j
                "transposed" => i / (b * kernel) / (a / groups) * b + i / kernel % b,
                // [M, C/g, k…]: element (m, k, …) → (m / (M/g))·(C/g) + k
                _ => i / (b * kernel) / (a / groups) * b + i / kernel % b,
            };
            Assert.Equal(s[channel], runs.Factor(s, (int)(i / runs.Length)));
        }
    }
}
