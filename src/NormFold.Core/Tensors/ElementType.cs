using NormFold.Onnx.Proto;

namespace NormFold.Tensors;

/// <summary>ONNX element types as stored in TensorProto.data_type, with their byte sizes.</summary>
internal static class ElementType
{
    public const int Float = (int)TensorProto.Types.DataType.Float;
    public const int Double = (int)TensorProto.Types.DataType.Double;
    public const int Float16 = (int)TensorProto.Types.DataType.Float16;
    public const int BFloat16 = (int)TensorProto.Types.DataType.Bfloat16;

    /// <summary>The floating-point types whose weights NormFold can rewrite.</summary>
    public static bool IsFoldable(int dataType) =>
        dataType is Float or Double or Float16 or BFloat16;

    public static string Name(int dataType) =>
        Enum.IsDefined(typeof(TensorProto.Types.DataType), dataType)
            ? ((TensorProto.Types.DataType)dataType).ToString().ToLowerInvariant()
            : $"type {dataType}";

    /// <summary>Bytes per element in raw_data, or 0 for types without a fixed byte width.</summary>
    public static int Size(int dataType) => (TensorProto.Types.DataType)dataType switch
    {
        TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int32 or TensorProto.Types.DataType.Uint32 => 4,
        TensorProto.Types.DataType.Double or TensorProto.Types.DataType.Int64 or TensorProto.Types.DataType.Uint64
            or TensorProto.Types.DataType.Complex64 => 8,
        TensorProto.Types.DataType.Complex128 => 16,
        TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Int16
            or TensorProto.Types.DataType.Uint16 => 2,
        TensorProto.Types.DataType.Uint8 or TensorProto.Types.DataType.Int8 or TensorProto.Types.DataType.Bool
            or TensorProto.Types.DataType.Float8E4M3Fn or TensorProto.Types.DataType.Float8E4M3Fnuz
            or TensorProto.Types.DataType.Float8E5M2 or TensorProto.Types.DataType.Float8E5M2Fnuz
            or TensorProto.Types.DataType.Float8E8M0 => 1,
        _ => 0,
    };
}
