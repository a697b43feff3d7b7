using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// An eval-mode BatchNormalization read and reduced to per-channel scale and shift, in double:
///   y = γ·(x − mean)/sqrt(var + ε) + β = s·x + t,   s = γ/sqrt(var + ε),   t = β − mean·s.
/// Shared by every BN rule, so they all accept and refuse the same BNs for the same reasons.
/// </summary>
internal sealed record BatchNormParameters(
    int Channels, double[] Scale, double[] Shift, float Epsilon, int Version, int ParameterType)
{
    /// <summary>Schema versions of BatchNormalization (ai.onnx) and the highest opset whose meaning is known.</summary>
    static readonly int[] Versions = [1, 6, 7, 9, 14, 15];
    public const int HighestKnownOpset = 24;

    /// <summary>The BN schema version a model's default-domain opset selects, or null if unknown.</summary>
    public static int? SchemaVersion(long opset)
    {
        if (opset < 1 || opset > HighestKnownOpset) return null;
        int v = 0;
        foreach (int s in Versions) if (s <= opset) v = s;
        return v;
    }

    /// <summary>Reads a BN; returns a refusal if it is not an eval-mode BN with constant, finite, per-channel parameters.</summary>
    public static Match.Refused? TryRead(GraphIndex g, NodeProto bn, out BatchNormParameters parameters)
    {
        parameters = null!;
        if (SchemaVersion(g.Opset) is not { } version)
            return Match.Refuse(SkipReason.UnsupportedOpsetVersion,
                $"default-domain opset {g.Opset} is outside 1..{HighestKnownOpset}, whose BatchNormalization versions NormFold knows");

        if (version < 7 && Attributes.Int(bn, "is_test", 0) == 0)
            return Match.Refuse(SkipReason.TrainingMode, $"is_test=0: BatchNormalization-{version} normalises with batch statistics");
        if (version < 9 && Attributes.Int(bn, "spatial", 1) == 0)
            return Match.Refuse(SkipReason.NonSpatial, $"spatial=0: BatchNormalization-{version} keeps statistics per activation, not per channel");
        if (version >= 14 && Attributes.Int(bn, "training_mode", 0) != 0)
            return Match.Refuse(SkipReason.TrainingMode, "training_mode=1: normalises with batch statistics");
        // BN-14/15: running_mean/running_var exist only in training mode; ONNX's inference rejects them named when
        // training_mode=0 and ONNX Runtime will not load the model. An empty name means absent.
        if (version >= 14 && bn.Output.Skip(1).Where(o => o.Length > 0).ToList() is { Count: > 0 } named)
            return Match.Refuse(SkipReason.TrainingOutputsInEvalMode,
                $"training_mode={(Attributes.Find(bn, "training_mode") is null ? "0 (absent)" : "0")} but it names output(s) " +
                $"{string.Join(", ", named.Select(o => $"'{o}'"))}, which BatchNormalization-{version} has only in training mode: " +
                "ONNX rejects the node (ONNX Runtime does not load it), so what it computes is not defined");
        for (int k = 1; k < bn.Output.Count; k++)
        {
            string o = bn.Output[k];
            if (o.Length == 0) continue;
            if (version is 7 or 9)
                return Match.Refuse(SkipReason.TrainingMode, $"BatchNormalization-{version} with {bn.Output.Count} outputs is the training form");
            if (g.Consumers(o).Count > 0 || g.IsGraphOutput(o))
                return Match.Refuse(SkipReason.OptionalOutputsUsed, $"optional output '{o}' is read");
        }
        if (bn.Input.Count < 5)
            return Match.Refuse(SkipReason.ShapeMismatch, $"has {bn.Input.Count} inputs, BatchNormalization needs 5");

        string[] roles = ["scale", "B", "mean", "var"];
        var tensors = new TensorProto[4];
        for (int k = 0; k < 4; k++)
        {
            if (!g.TryGetConstant(bn.Input[k + 1], out tensors[k], out string whyNot))
                return Match.Refuse(SkipReason.ParameterNotConstant, $"{roles[k]}: {whyNot}");
            if (!ElementType.IsFoldable(tensors[k].DataType))
                return Match.Refuse(SkipReason.UnsupportedDataType, $"{roles[k]} '{bn.Input[k + 1]}' is {ElementType.Name(tensors[k].DataType)}");
        }
        long channels = tensors[0].Dims.Count == 1 ? tensors[0].Dims[0] : -1;
        for (int k = 0; k < 4; k++)
            if (tensors[k].Dims.Count != 1 || tensors[k].Dims[0] != channels)
                return Match.Refuse(SkipReason.ShapeMismatch,
                    $"{roles[k]} '{bn.Input[k + 1]}' has shape [{string.Join(",", tensors[k].Dims)}], expected [{(channels < 0 ? "C" : channels)}] like scale");

        var values = new double[4][];
        for (int k = 0; k < 4; k++)
        {
            values[k] = g.Model.ReadDoubles(tensors[k]);
            int bad = Array.FindIndex(values[k], v => !double.IsFinite(v));
            if (bad >= 0)
                return Match.Refuse(SkipReason.NonFiniteParameter, $"{roles[k]} '{bn.Input[k + 1]}'[{bad}] = {values[k][bad]}");
        }
        float epsilon = Attributes.Float(bn, "epsilon", 1e-5f);
        if (!float.IsFinite(epsilon))
            return Match.Refuse(SkipReason.NonFiniteParameter, $"epsilon = {epsilon}");

        double[] gamma = values[0], beta = values[1], mean = values[2], variance = values[3];
        var s = new double[channels];
        var t = new double[channels];
        for (int c = 0; c < channels; c++)
        {
            double denominator = variance[c] + epsilon;
            if (!(denominator > 0))
                return Match.Refuse(SkipReason.NonPositiveVariance, $"var[{c}] + epsilon = {variance[c]} + {epsilon} ≤ 0");
            s[c] = gamma[c] / Math.Sqrt(denominator);
            t[c] = beta[c] - mean[c] * s[c];
        }
        // ONNX Runtime evaluates the BN as y = x·s + t with s and t computed in the parameters' type: where either
        // overflows it, the original gives ±Inf or NaN on that channel, which no fold (and no Mul + Add) reproduces.
        if (Affine.FoldedValues.NotFinite("the BN's factor γ/√(var + ε)", tensors[0].DataType, s) is { } sOverflows)
            return sOverflows with { Detail = sOverflows.Detail + ": the original computes ±Inf or NaN on that channel" };
        if (Affine.FoldedValues.NotFinite("the BN's shift β − mean·γ/√(var + ε)", tensors[0].DataType, t) is { } tOverflows)
            return tOverflows with { Detail = tOverflows.Detail + ": the original computes ±Inf or NaN on that channel" };
        parameters = new BatchNormParameters((int)channels, s, t, epsilon, version, tensors[0].DataType);
        return null;
    }
}
