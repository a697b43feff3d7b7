using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// The bias after a fold, for every producer: b'[…, n] = s[n]·factor·b[…, n] + t[n], with b absent meaning 0.
/// b may be a scalar, [1], [N], [1,N], [M,1] or [M,N] (broadcast over the last axis as it was); the result keeps
/// its leading axis and widens its last axis to N.
/// </summary>
internal static class ChannelBias
{
    public static bool TryFold(TensorProto? bias, double[]? values, double factor, double[] s, double[] t,
        out double[] result, out long[] dims, out string whyNot)
    {
        int n = s.Length;
        whyNot = "";
        if (bias is null)
        {
            dims = [n];
            result = (double[])t.Clone();
            return true;
        }
        var d = bias.Dims;
        long rows = d.Count == 2 ? d[0] : 1;
        long cols = d.Count == 0 ? 1 : d[^1];
        if (d.Count > 2 || (cols != 1 && cols != n) || rows < 1 || rows * n > Array.MaxLength)
        {
            dims = [];
            result = [];
            whyNot = $"bias '{bias.Name}' has shape [{string.Join(",", d)}], which does not broadcast along {n} channels";
            return false;
        }
        dims = d.Count == 2 ? [rows, n] : [n];
        result = new double[rows * n];
        for (long r = 0; r < rows; r++)
            for (int c = 0; c < n; c++)
            {
                double b = values![cols == 1 ? r : r * n + c];
                result[r * n + c] = s[c] * factor * b + t[c];
            }
        return true;
    }
}
