using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Verification;

/// <summary>An element passes when |actual − reference| ≤ Atol or ≤ Rtol·|reference|.</summary>
public sealed record Tolerance(double Atol, double Rtol)
{
    /// <summary>
    /// Default tolerance for an output, from its element type and the reference's largest finite magnitude M:
    /// atol = k·M and rtol = k, with k = 1e-4 (float32), 1e-2 (float16), 5e-2 (bfloat16), 1e-10 (double).
    /// A fold only reorders roundings, so its drift scales with the values; a wrong fold changes values by far more
    /// (see the fault-injection tests and the README). atol is at least the type's smallest normal value: among the
    /// subnormals rounding is absolute (outputs of ~1e-44 in float differ by whole steps when rounded in another order)
    /// and flushing to 0 depends on the kernel (ORT's Mul flushes, its ConvTranspose does not).
    /// </summary>
    public static Tolerance Default(int elementType, double referenceMagnitude)
    {
        double k = RelativeFor(elementType);
        double m = referenceMagnitude > 0 && double.IsFinite(referenceMagnitude) ? referenceMagnitude : 1;
        return new Tolerance(k == 0 ? 0 : Math.Max(k * m, SmallestNormal(elementType)), k);
    }

    /// <summary>The smallest positive normal value of a floating-point type.</summary>
    internal static double SmallestNormal(int elementType) => (T)elementType switch
    {
        T.Float16 => 6.103515625e-5,
        T.Double => 2.2250738585072014e-308,
        _ => 1.1754943508222875e-38, // float, bfloat16
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
