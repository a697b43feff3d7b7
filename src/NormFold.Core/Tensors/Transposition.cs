namespace NormFold.Tensors;

internal static class Transposition
{
    /// <summary>Transposes a row-major array: output dim d is input dim perm[d].</summary>
    public static (double[] Values, long[] Dims) Apply(double[] values, long[] dims, int[] perm)
    {
        int rank = dims.Length;
        if (perm.Length != rank || perm.Distinct().Count() != rank || perm.Any(p => p < 0 || p >= rank))
            throw new FormatException($"Transpose perm [{string.Join(",", perm)}] does not fit rank {rank}");
        var outDims = perm.Select(p => dims[p]).ToArray();
        var inStrides = new long[rank];
        for (int d = rank - 1, s = 1; d >= 0; s *= (int)dims[d], d--) inStrides[d] = s;
        var result = new double[values.Length];
        var index = new long[rank];
        for (long i = 0; i < result.Length; i++)
        {
            long src = 0;
            for (int d = 0; d < rank; d++) src += index[d] * inStrides[perm[d]];
            result[i] = values[src];
            for (int d = rank - 1; d >= 0; d--)
            {
                if (++index[d] < outDims[d]) break;
                index[d] = 0;
            }
        }
        return (result, outDims);
    }
}
