using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.BatchNorm;
using NormFold.Tensors;

namespace NormFold.Verification;

/// <summary>What the weight audit found: folded weights checked, and the elements not equal to the exact fold.</summary>
public sealed record WeightAuditResult(int Tensors, long Elements, long Inexact, double MaxUlp, string? WorstTensor, IReadOnlyList<string> Skipped)
{
    public bool Passed => Inexact == 0;
}

/// <summary>
/// Recomputes every BN fold from the original — W·γ/√(var+ε) in double, rounded once to the stored type — and compares
/// the candidate's weights with it bit for bit. Output comparisons cannot see sub-ulp errors (a float16 fold rounded
/// twice, or computed in float16, drifts less than float16 execution noise); this sees every one. It expects folds as
/// NormFold makes them (node names kept); for other tools' folds it reports how far they are from exact.
/// </summary>
public static class WeightAudit
{
    public static WeightAuditResult Run(OnnxModel reference, OnnxModel candidate)
    {
        var ri = new GraphIndex(reference.Proto.Graph, reference);
        var ci = new GraphIndex(candidate.Proto.Graph, candidate);
        var candidateNodes = candidate.Proto.Graph.Node.Where(n => n.Name.Length > 0).GroupBy(n => n.Name).ToDictionary(g => g.Key, g => g.First());
        var candidateBns = candidate.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization").Select(n => n.Name).ToHashSet();
        var skipped = new List<string>();
        int tensors = 0;
        long elements = 0, inexact = 0;
        double maxUlp = 0;
        string? worst = null;
        foreach (var bn in reference.Proto.Graph.Node.Where(n => n.OpType == "BatchNormalization" && Attributes.IsDefaultDomain(n)))
        {
            if (candidateBns.Contains(bn.Name)) continue; // not folded
            var producer = ri.Producer(bn.Input[0]);
            if (producer is null || producer.Name.Length == 0 || !candidateNodes.TryGetValue(producer.Name, out var folded) || folded.OpType != producer.OpType)
            {
                if (producer is { OpType: "Conv" or "ConvTranspose" or "Gemm" or "MatMul" })
                    skipped.Add($"{Attributes.Describe(bn)}: no node named '{producer.Name}' in the candidate");
                continue;
            }
            if (ri.Consumers(bn.Output[0]).Any(c => c.OpType == "BatchNormalization" && !candidateBns.Contains(c.Name)))
            {
                skipped.Add($"{Attributes.Describe(bn)}: folded together with the BN after it");
                continue;
            }
            if (BatchNormParameters.TryRead(ri, bn, out var p) is not null) continue;
            ChannelLayout? layout = producer.OpType switch
            {
                "Conv" => new ChannelLayout.Rows(),
                "Gemm" => Attributes.Int(producer, "transB", 0) != 0 ? new ChannelLayout.Rows() : new ChannelLayout.Columns(),
                "MatMul" => new ChannelLayout.Columns(),
                "ConvTranspose" when ri.TryGetConstant(producer.Input[1], out var wt, out _) && wt.Dims.Count >= 3 =>
                    new ChannelLayout.TransposedConv(wt.Dims[0], wt.Dims[1], Attributes.Int(producer, "group", 1)),
                _ => null,
            };
            if (layout is null || !ri.TryGetConstant(producer.Input[1], out var w, out _) || !ci.TryGetConstant(folded.Input[1], out var fw, out _)
                || !ElementType.IsFoldable(w.DataType))
                continue;
            if (fw.DataType != w.DataType || !fw.Dims.SequenceEqual(w.Dims))
            {
                skipped.Add($"{Attributes.Describe(folded)}: weight type or shape changed");
                continue;
            }
            var expected = ChannelScaling.Scale(reference, w, layout, p.Scale).ToArray();
            var got = candidate.RawBytes(fw).ToArray();
            if (got.Length == 0) got = TensorData.Encode(fw.DataType, candidate.ReadDoubles(fw));
            tensors++;
            var (bad, ulp) = Compare(expected, got, w.DataType);
            elements += expected.Length / ElementType.Size(w.DataType);
            inexact += bad;
            if (ulp > maxUlp) { maxUlp = ulp; worst = fw.Name; }
        }
        return new WeightAuditResult(tensors, elements, inexact, maxUlp, worst, skipped);
    }

    /// <summary>Elements whose bits differ, and the largest distance in units in the last place.</summary>
    static (long Bad, double MaxUlp) Compare(byte[] expected, byte[] got, int type)
    {
        int size = ElementType.Size(type);
        long bad = 0;
        double max = 0;
        for (int i = 0; i < expected.Length; i += size)
        {
            if (expected.AsSpan(i, size).SequenceEqual(got.AsSpan(i, size))) continue;
            bad++;
            double e = Value(expected, i, type), g = Value(got, i, type);
            double ulp = UlpOf(e, type);
            max = Math.Max(max, ulp > 0 ? Math.Abs(g - e) / ulp : double.PositiveInfinity);
        }
        return (bad, max);
    }

    static double Value(byte[] b, int i, int type) => type switch
    {
        ElementType.Float => BitConverter.ToSingle(b, i),
        ElementType.Double => BitConverter.ToDouble(b, i),
        ElementType.Float16 => (double)BitConverter.ToHalf(b, i),
        _ => Rounding.FromBFloat16Bits(BitConverter.ToUInt16(b, i)),
    };

    static double UlpOf(double x, int type)
    {
        var (mantissa, minExponent) = type switch
        {
            ElementType.Float => (23, -126),
            ElementType.Double => (52, -1022),
            ElementType.Float16 => (10, -14),
            _ => (7, -126),
        };
        return Math.ScaleB(1.0, Math.Max(x == 0 ? minExponent : Math.ILogB(x), minExponent) - mantissa);
    }
}
