using Google.Protobuf;
using NormFold.Onnx.Proto;

namespace NormFold.Onnx;

/// <summary>
/// Parses a model without copying its weights: the file's bytes (mapped, see FileBytes), the main graph's initializer
/// raw_data payloads are cut out of a copy of the wire bytes (only the small remainder goes through Google.Protobuf),
/// and each initializer's raw_data is then set to a view of the buffer. Serialising writes the same bytes as a plain
/// parse would (fields are written in field-number order either way). Anything unusual — group wire types, malformed
/// varints — returns null, and the caller parses the plain way.
/// A packed float_data (double_data) payload of at least SplicedWriter.MinSpliced bytes holds the same little-endian
/// bytes as raw_data: it is cut out too and becomes a raw_data view, listed in <c>typed</c> with its field number so the
/// writer puts it back as that field. Only when it is the tensor's one data field and matches its data_type; anything
/// else (float16 in int32_data, unpacked or repeated fields, raw_data beside it) is left to protobuf, which copies.
/// </summary>
internal static class ZeroCopyParser
{
    const int ModelGraph = 7, GraphInitializer = 5, TensorRawData = 9;
    internal const int TensorFloatData = 4, TensorDoubleData = 10;

    public static ModelProto? TryParse(ReadOnlyMemory<byte> buffer) => TryParse(buffer, out _);

    /// <param name="typed">Initializers whose raw_data view was a packed float_data (4) or double_data (10) field.</param>
    public static ModelProto? TryParse(ReadOnlyMemory<byte> buffer, out List<(TensorProto Tensor, int Field)> typed)
    {
        typed = [];
        var slices = new List<Slice?>();
        var stripped = new Output(buffer.Length / 64 + 1024);
        try
        {
            if (!CopyMessage(buffer.Span, 0, buffer.Length, stripped, depth: 0, slices)) return null;
        }
        catch (IndexOutOfRangeException) { return null; }
        catch (ArgumentOutOfRangeException) { return null; }
        ModelProto model;
        try { model = ModelProto.Parser.ParseFrom(stripped.Written); }
        catch (InvalidProtocolBufferException) { return null; }
        if (model.Graph is null ? slices.Count != 0 : model.Graph.Initializer.Count != slices.Count) return null;
        for (int i = 0; i < slices.Count; i++)
            if (slices[i] is { } s)
            {
                var t = model.Graph!.Initializer[i];
                if (s.Field != TensorRawData)
                {
                    // The view stands for float_data / double_data only where protobuf would have read the same elements.
                    if (t.DataType != (s.Field == TensorFloatData ? (int)TensorProto.Types.DataType.Float : (int)TensorProto.Types.DataType.Double)) return null;
                    typed.Add((t, s.Field));
                }
                t.RawData = UnsafeByteOperations.UnsafeWrap(buffer.Slice(s.Offset, s.Length));
            }
        return model;
    }

    /// <summary>A payload cut out of an initializer: raw_data (9), or a packed float_data (4) / double_data (10).</summary>
    readonly record struct Slice(int Field, int Offset, int Length);

    /// <summary>Copies the fields of a message; depth 0 = ModelProto, 1 = GraphProto, 2 = an initializer TensorProto.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static bool CopyMessage(ReadOnlySpan<byte> b, int start, int end, Output output, int depth, List<Slice?> slices)
    {
        int pos = start;
        Slice? raw = null, packed = null;
        int dataFields = 0; // occurrences of the data fields (4–7, 9–11) in a tensor
        while (pos < end)
        {
            int fieldStart = pos;
            if (!ReadVarint(b, ref pos, end, out ulong tag)) return false;
            int field = (int)(tag >> 3), wire = (int)(tag & 7);
            if (depth == 2 && field is >= 4 and <= 7 or >= 9 and <= 11) dataFields++;
            switch (wire)
            {
                case 0: if (!ReadVarint(b, ref pos, end, out _)) return false; break;
                case 1: pos += 8; break;
                case 5: pos += 4; break;
                case 2:
                    if (!ReadVarint(b, ref pos, end, out ulong length) || length > (ulong)(end - pos)) return false;
                    int payload = pos;
                    pos += (int)length;
                    if (depth == 0 && field == ModelGraph || depth == 1 && field == GraphInitializer)
                    {
                        int before = slices.Count;
                        output.WriteVarint(tag);
                        int at = output.OpenLength();
                        if (!CopyMessage(b, payload, pos, output, depth + 1, slices)) return false;
                        if (depth == 1 && slices.Count == before) slices.Add(null); // an initializer without raw_data
                        output.CloseLength(at);
                        continue;
                    }
                    if (depth == 2 && field == TensorRawData)
                    {
                        raw = new Slice(field, payload, (int)length); // last one wins, as in protobuf
                        continue;
                    }
                    if (depth == 2 && field is TensorFloatData or TensorDoubleData && length >= SplicedWriter.MinSpliced
                        && length % (field == TensorFloatData ? 4ul : 8ul) == 0)
                    {
                        packed = new Slice(field, payload, (int)length);
                        continue;
                    }
                    break;
                default:
                    return false; // groups (3, 4) or garbage
            }
            if (pos > end) return false;
            output.Write(b.Slice(fieldStart, pos - fieldStart));
        }
        if (depth == 2)
        {
            if (packed != null && dataFields != 1) return false; // a packed field beside other data: protobuf merges them
            slices.Add(raw ?? packed);
        }
        return pos == end;
    }

    internal static bool ReadVarint(ReadOnlySpan<byte> b, ref int pos, int end, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64 && pos < end; shift += 7)
        {
            byte x = b[pos++];
            value |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return true;
        }
        return false;
    }

    /// <summary>The stripped copy, in one growing array: a nested message's length is written in front of it once its
    /// fields are (a 5-byte hole, closed up by moving the fields down), not through a stream per message.</summary>
    sealed class Output(int capacity)
    {
        byte[] _bytes = new byte[capacity];
        int _length;

        public ReadOnlySpan<byte> Written => _bytes.AsSpan(0, _length);

        Span<byte> Grow(int count)
        {
            if (_length + count > _bytes.Length) Array.Resize(ref _bytes, Math.Max(_bytes.Length * 2, _length + count));
            var span = _bytes.AsSpan(_length, count);
            _length += count;
            return span;
        }

        public void Write(ReadOnlySpan<byte> bytes) => bytes.CopyTo(Grow(bytes.Length));

        public void WriteVarint(ulong v)
        {
            while (v >= 0x80) { Grow(1)[0] = (byte)(v | 0x80); v >>= 7; }
            Grow(1)[0] = (byte)v;
        }

        /// <summary>Room for a length prefix (at most 5 bytes: messages are below 2 GB); its position.</summary>
        public int OpenLength()
        {
            Grow(5);
            return _length - 5;
        }

        /// <summary>Writes the length of what followed <see cref="OpenLength"/> into its room, closing the gap.</summary>
        public void CloseLength(int at)
        {
            int content = at + 5, size = _length - content, n = 0;
            for (uint v = (uint)size; ; v >>= 7)
            {
                _bytes[at + n++] = (byte)(v >= 0x80 ? v | 0x80 : v);
                if (v < 0x80) break;
            }
            _bytes.AsSpan(content, size).CopyTo(_bytes.AsSpan(at + n));
            _length -= 5 - n;
        }
    }
}
