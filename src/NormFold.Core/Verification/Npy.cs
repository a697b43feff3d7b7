using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Verification;

/// <summary>NumPy .npy files, format versions 1.0, 2.0 and 3.0; C or Fortran order; either byte order.</summary>
internal static partial class Npy
{
    static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    static readonly (string Code, T Type)[] Types =
    [
        ("f4", T.Float), ("f8", T.Double), ("f2", T.Float16), ("u1", T.Uint8), ("i1", T.Int8), ("i2", T.Int16),
        ("u2", T.Uint16), ("i4", T.Int32), ("u4", T.Uint32), ("i8", T.Int64), ("u8", T.Uint64), ("b1", T.Bool),
    ];

    public static NamedTensor Read(string path, string? name = null)
    {
        byte[] bytes;
        bytes = NormFoldIOException.Guard(path, () => File.ReadAllBytes(path));
        try { return Parse(bytes, name ?? Path.GetFileNameWithoutExtension(path)); }
        catch (FormatException e) { throw new InvalidUsageException($"{path}: {e.Message}", e); }
    }

    /// <exception cref="FormatException">not a readable .npy (<see cref="Read"/> names the file)</exception>
    internal static NamedTensor Parse(byte[] bytes, string name)
    {
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic)) throw new FormatException("not a .npy file (bad magic)");
        int major = bytes[6];
        long headerLength;
        int offset;
        switch (major)
        {
            case 1: headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)); offset = 10; break;
            case 2 or 3:
                if (bytes.Length < 12) throw new FormatException("truncated header");
                headerLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)); offset = 12; break;
            default: throw new FormatException($".npy format version {major} is not supported (1, 2 and 3 are)");
        }
        if (offset + headerLength > bytes.Length) throw new FormatException("truncated header");
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(bytes, offset, (int)headerLength);
        var descr = DescrPattern().Match(header);
        var fortran = FortranPattern().Match(header);
        var shapeMatch = ShapePattern().Match(header);
        if (!descr.Success || !fortran.Success || !shapeMatch.Success) throw new FormatException($"unreadable header: {header.Trim()}");
        string code = descr.Groups[1].Value;
        char order = code[0];
        var entry = Types.FirstOrDefault(t => t.Code == code[1..]);
        if (entry.Code is null || order is not ('<' or '>' or '|' or '='))
            throw new FormatException($"dtype '{code}' is not supported (floating point, integers and bool are)");
        var dims = shapeMatch.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var shape = new long[dims.Length];
        for (int d = 0; d < dims.Length; d++)
            if (!long.TryParse(dims[d], NumberStyles.None, CultureInfo.InvariantCulture, out shape[d]))
                throw new FormatException($"shape ({shapeMatch.Groups[1].Value}): '{dims[d]}' is not a dimension");
        int size = Tensors.ElementType.Size((int)entry.Type);
        long count = 1;
        foreach (long d in shape)
            if (d != 0 && count > Array.MaxLength / size / d) throw new FormatException($"shape ({shapeMatch.Groups[1].Value}) is too large");
            else count *= d;
        int dataStart = offset + (int)headerLength;
        if (bytes.Length - dataStart < count * size)
            throw new FormatException($"holds {bytes.Length - dataStart} bytes of data, shape ({string.Join(", ", shape)}) of {code} needs {count * size}");
        var data = bytes.AsSpan(dataStart, (int)(count * size)).ToArray();
        if (order == '>' && size > 1)
            for (int i = 0; i < data.Length; i += size) data.AsSpan(i, size).Reverse();
        if (fortran.Groups[1].Value == "True" && shape.Length > 1)
            data = FortranToC(data, shape, size);
        return new NamedTensor(name, (int)entry.Type, shape, data);
    }

    static byte[] FortranToC(byte[] data, long[] shape, int size)
    {
        var result = new byte[data.Length];
        int rank = shape.Length;
        var index = new long[rank];
        long count = data.Length / size;
        for (long c = 0; c < count; c++)
        {
            long f = 0, stride = 1;
            for (int d = 0; d < rank; d++) { f += index[d] * stride; stride *= shape[d]; }
            Array.Copy(data, f * size, result, c * size, size);
            for (int d = rank - 1; d >= 0; d--) { if (++index[d] < shape[d]) break; index[d] = 0; }
        }
        return result;
    }

    /// <summary>Writes format 1.0 (2.0 when the header needs it), little-endian, C order; header padded to 64 bytes.</summary>
    public static void Write(string path, NamedTensor tensor)
    {
        var entry = Types.FirstOrDefault(t => (int)t.Type == tensor.ElementType);
        if (entry.Code is null)
            throw new InvalidUsageException($"'{tensor.Name}': element type {Tensors.ElementType.Name(tensor.ElementType)} has no .npy dtype");
        string prefix = tensor.ElementType is (int)T.Uint8 or (int)T.Int8 or (int)T.Bool ? "|" : "<";
        string shape = tensor.Shape.Length == 1 ? $"({tensor.Shape[0]},)" : $"({string.Join(", ", tensor.Shape)})";
        string dict = $"{{'descr': '{prefix}{entry.Code}', 'fortran_order': False, 'shape': {shape}, }}";
        bool v2 = dict.Length + 11 > ushort.MaxValue;
        int fixedLength = v2 ? 12 : 10;
        int total = (fixedLength + dict.Length + 1 + 63) / 64 * 64;
        string header = dict.PadRight(total - fixedLength - 1) + "\n";
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        fs.Write(Magic);
        fs.Write([(byte)(v2 ? 2 : 1), 0]);
        var len = new byte[v2 ? 4 : 2];
        if (v2) BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)header.Length);
        else BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
        fs.Write(len);
        fs.Write(Encoding.Latin1.GetBytes(header));
        fs.Write(tensor.Data.Span);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")] private static partial Regex DescrPattern();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")] private static partial Regex FortranPattern();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")] private static partial Regex ShapePattern();
}
