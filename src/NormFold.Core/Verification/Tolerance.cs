using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Verification;

/// <summary>An element passes when |actual − reference| ≤ Atol or ≤ Rtol·|reference|.</summary>
public sealed record Tolerance(double Atol, double Rtol)
{
    /// <summary>
    /// Default tolerance for an output, from its element type and the reference's largest finite magnitude M:
    /// atol = k·M and rtol = k, with k = 1e-4 (float32), 1e-2 (float16), 5e-2 (bfloat16), 1e-10 (double).
    /// A fold only reorders roundings, so its drift scales with the values; a wrong fold changes values by far more
    /// (see the fault-injection tests and the README). Among the subnormals rounding is absolute: atol is at least 16 of
    /// the type's smallest steps (outputs of magnitude ~1e-44 in float32 differ by whole steps when rounded differently).
    /// </summary>
    public static Tolerance Default(int elementType, double referenceMagnitude)
    {
        double k = RelativeFor(elementType);
        double m = referenceMagnitude > 0 && double.IsFinite(referenceMagnitude) ? referenceMagnitude : 1;
        return new Tolerance(k == 0 ? 0 : Math.Max(k * m, 16 * SmallestStep(elementType)), k);
    }

    /// <summary>The smallest positive (subnormal) value of a floating-point type.</summary>
    static double SmallestStep(int elementType) => (T)elementType switch
    {
        T.Float16 => 5.960464477539063e-8,
        T.Bfloat16 => 9.183549615799121e-41,
        T.Double => double.Epsilon,
        _ => float.Epsilon,
    };

    public static double RelativeFor(int elementType) => (T)elementType switch
    {
        T.Float => 1e-4,
        T.Float16 => 1e-2,
        T.Bfloat16 => 5e-2,
        T.Double => 1e-10,
        _ => 0, // integers and bool must match exactly
    };
}
