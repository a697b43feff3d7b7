using NormFold.Graph;
using NormFold.Onnx;

namespace NormFold.Verification;

/// <summary>
/// Rough byte sizes of a model's node outputs, propagated from the inputs' real sizes, to size the check's batches
/// before anything runs. Per node: Conv scales its input by output/input channels (from the weight) over the strides,
/// ConvTranspose by the strides, pools divide by their strides, Resize/Upsample multiply by 4, Concat sums, MatMul and
/// Gemm scale by the weight's output/input width; everything else keeps its largest input. An estimate, never a
/// bound: it only decides how many tensors go into a batch.
/// </summary>
internal static class TensorSizes
{
    public static Dictionary<string, long> Estimate(OnnxModel model, IEnumerable<NamedTensor> inputs)
    {
        var g = model.Proto.Graph;
        var size = inputs.ToDictionary(i => i.Name, i => Math.Max(1L, i.Data.Length), StringComparer.Ordinal);
        var weights = g.Initializer.ToDictionary(t => t.Name, t => t.Dims.ToArray(), StringComparer.Ordinal);
        foreach (var n in g.Node)
        {
            var activations = n.Input.Where(i => i.Length > 0 && !weights.ContainsKey(i)).Select(i => size.GetValueOrDefault(i, 1)).ToList();
            long x = activations.Count > 0 ? activations.Max() : 1;
            long[]? w = n.Input.Count > 1 && weights.TryGetValue(n.Input[1], out var d) ? d : null;
            long strides = Attributes.Ints(n, "strides")?.Aggregate(1L, (p, s) => p * Math.Max(s, 1)) ?? 1;
            double y = n.OpType switch
            {
                "Conv" when w is { Length: > 2 } && w[1] > 0 => (double)x * w[0] / (w[1] * Attributes.Int(n, "group", 1)) / strides,
                "ConvTranspose" => (double)x * strides * (w is { Length: > 2 } && w[0] > 0 ? w[1] * Attributes.Int(n, "group", 1) / (double)w[0] : 1),
                "MaxPool" or "AveragePool" or "LpPool" => (double)x / strides,
                "Resize" or "Upsample" => 4.0 * x,
                "Concat" => activations.Sum(),
                "MatMul" or "Gemm" when w is { Length: 2 } && w[0] > 0 && w[1] > 0 =>
                    (double)x * (Attributes.Int(n, "transB", 0) == 1 ? w[0] / (double)w[1] : w[1] / (double)w[0]),
                _ => x,
            };
            foreach (var o in n.Output)
                if (o.Length > 0) size[o] = (long)Math.Clamp(y, 1, long.MaxValue / 4);
        }
        return size;
    }
}
