using Google.Protobuf;
using NormFold.Onnx.Proto;

namespace NormFold.Onnx;

/// <summary>
/// Serialises a model to the same bytes as Google.Protobuf's WriteTo, but writes the main graph's large initializer
/// payloads straight from where they are (the mapped input file) or computes them into the output (deferred folds),
/// instead of copying them through protobuf's buffer. The mirror image of <see cref="ZeroCopyParser"/>:
/// protobuf serialises the model with those fields holding a placeholder (raw_data empty; a float_data / double_data
/// view, one zero element — so protobuf puts each field where it belongs, before unknown fields too), and the walk
/// below replaces each placeholder by the real field, fixing the length prefixes of the tensor, graph and model
/// fields around it.
/// </summary>
internal static class SplicedWriter
{
    const int ModelGraph = 7, GraphInitializer = 5, TensorRawData = 9;
    /// <summary>Payloads below this are left to protobuf (float_data / double_data views are always spliced).</summary>
    internal const int MinSpliced = 1 << 12;

    /// <summary>A spliced initializer: its bytes (null when deferred), their length, and the field they are written as.</summary>
    readonly record struct Spliced(TensorProto Tensor, ByteString? Raw, long Length, int Field);

    public static void Write(OnnxModel model, Stream output, int minSpliced = MinSpliced)
    {
        var graph = model.Proto.Graph;
        var spliced = new Dictionary<int, Spliced>();
        if (graph != null)
            for (int i = 0; i < graph.Initializer.Count; i++)
            {
                var t = graph.Initializer[i];
                if (OnnxModel.IsExternal(t)) continue;
                bool deferred = model.IsDeferred(t);
                int? typed = deferred ? null : model.TypedViewField(t);
                if (deferred || typed != null || t.HasRawData && t.RawData.Length >= minSpliced)
                    spliced[i] = new(t, deferred ? null : t.RawData, model.RawLength(t), typed ?? TensorRawData);
            }
        if (spliced.Count == 0)
        {
            model.Proto.WriteTo(output);
            return;
        }
        byte[] skeleton;
        foreach (var s in spliced.Values)
        {
            s.Tensor.RawData = ByteString.Empty;
            if (s.Field == ZeroCopyParser.TensorFloatData) { s.Tensor.ClearRawData(); s.Tensor.FloatData.Add(0f); }
            if (s.Field == ZeroCopyParser.TensorDoubleData) { s.Tensor.ClearRawData(); s.Tensor.DoubleData.Add(0d); }
        }
        try { skeleton = model.Proto.ToByteArray(); }
        finally
        {
            foreach (var s in spliced.Values)
            {
                if (s.Field == ZeroCopyParser.TensorFloatData) s.Tensor.FloatData.Clear();
                if (s.Field == ZeroCopyParser.TensorDoubleData) s.Tensor.DoubleData.Clear();
                if (s.Raw != null) s.Tensor.RawData = s.Raw;
                else s.Tensor.ClearRawData(); // deferred
            }
        }
        var pieces = Splice(skeleton, spliced);
        Timeline.Mark("skeleton");
        if (output is FileStream { CanSeek: true } file)
        {
            WriteAt(model, file, pieces);
            return;
        }
        foreach (var piece in pieces)
        {
            if (piece.Tensor is null) output.Write(piece.Bytes, piece.Offset, piece.Length);
            else model.WriteRaw(piece.Tensor, output);
        }
    }

    /// <summary>The pieces written as windows of the file of at most <see cref="FileBytes.Chunk"/> bytes, each filled
    /// (skeleton bytes copied, payloads read or computed) into one pooled buffer and written with one pwrite at its
    /// offset, windows on every core at once: a model of many small tensors is a few large writes, not one per piece.
    /// A payload is split between windows only at multiples of 8 bytes from its start (element boundaries, which a
    /// deferred fold's <see cref="OnnxModel.FillRaw"/> needs).</summary>
    static void WriteAt(OnnxModel model, FileStream file, List<Piece> pieces)
    {
        file.Flush();
        long position = file.Position;
        var segments = new List<(Piece Piece, int Offset, int Length)>();
        var windows = new List<(long At, int First, int End)>();
        int fill = 0;
        void Close()
        {
            if (fill == 0) return;
            windows.Add((position - fill, windows.Count == 0 ? 0 : windows[^1].End, segments.Count));
            fill = 0;
        }
        foreach (var piece in pieces)
        {
            long length = piece.Tensor is null ? piece.Length : model.RawLength(piece.Tensor);
            for (long done = 0; done < length;)
            {
                long take = Math.Min(length - done, FileBytes.Chunk - fill);
                if (piece.Tensor != null && done + take < length) take -= take % 8;
                if (take == 0)
                {
                    Close();
                    continue;
                }
                segments.Add((piece, (int)done, (int)take));
                done += take;
                fill += (int)take;
                position += take;
                if (fill == FileBytes.Chunk) Close();
            }
        }
        Close();
        var handle = file.SafeFileHandle;
        FileBytes.ParallelFor(windows.Count, FileBytes.ChunkBuffer.Rent, (k, buffer) =>
        {
            var (at, first, end) = windows[k];
            var window = buffer.Span(FileBytes.Chunk);
            int used = 0;
            for (int i = first; i < end; i++)
            {
                var (piece, offset, length) = segments[i];
                var destination = window.Slice(used, length);
                if (piece.Tensor is null) piece.Bytes.AsSpan(piece.Offset + offset, length).CopyTo(destination);
                else model.FillRaw(piece.Tensor, offset, destination);
                used += length;
            }
            RandomAccess.Write(handle, window[..used], at);
        }, buffer => buffer.Dispose());
        file.Seek(position, SeekOrigin.Begin);
    }

    /// <summary>Bytes[Offset, Offset + Length) — of the skeleton, or new framing (a tag and a length) — or a tensor's payload.</summary>
    readonly record struct Piece(byte[] Bytes, int Offset, int Length, TensorProto? Tensor = null)
    {
        public static Piece Payload(TensorProto t) => new([], 0, 0, t);
        public static Piece Framing(int tag, long length)
        {
            var s = new MemoryStream(11);
            WriteVarint(s, (ulong)tag);
            WriteVarint(s, (ulong)length);
            return new Piece(s.ToArray(), 0, (int)s.Length);
        }
    }

    static List<Piece> Splice(byte[] skeleton, Dictionary<int, Spliced> spliced)
    {
        // The graph field of the model (protobuf writes it once, in field order).
        var (graphTag, graphStart, graphEnd) = FindField(skeleton, 0, skeleton.Length, ModelGraph)
            ?? throw new InvalidOperationException("model without a graph field");
        var graphPieces = new List<Piece>();
        long graphLength = 0;
        int pos = graphStart, initializer = 0;
        while (pos < graphEnd)
        {
            int fieldStart = pos;
            var (field, wire, payload, end) = NextField(skeleton, ref pos, graphEnd);
            if (field == GraphInitializer && wire == 2 && spliced.TryGetValue(initializer++, out var s))
            {
                var (placeholder, _, after) = FindField(skeleton, payload, end, s.Field)
                    ?? throw new InvalidOperationException($"tensor '{s.Tensor.Name}': no placeholder for field {s.Field}");
                long tensorLength = end - payload - (after - placeholder) + 1 + VarintSize((ulong)s.Length) + s.Length;
                graphPieces.Add(Piece.Framing(GraphInitializer << 3 | 2, tensorLength));
                graphPieces.Add(new Piece(skeleton, payload, placeholder - payload));
                graphPieces.Add(Piece.Framing(s.Field << 3 | 2, s.Length));
                graphPieces.Add(Piece.Payload(s.Tensor));
                graphPieces.Add(new Piece(skeleton, after, end - after));
                graphLength += 1 + VarintSize((ulong)tensorLength) + tensorLength;
                continue;
            }
            graphPieces.Add(new Piece(skeleton, fieldStart, end - fieldStart));
            graphLength += end - fieldStart;
        }
        if (graphLength > int.MaxValue) throw new InvalidOperationException("graph larger than protobuf's 2 GB limit");
        return
        [
            new Piece(skeleton, 0, graphTag),
            Piece.Framing(ModelGraph << 3 | 2, graphLength),
            .. graphPieces,
            new Piece(skeleton, graphEnd, skeleton.Length - graphEnd),
        ];
    }

    static (int TagStart, int PayloadStart, int End)? FindField(ReadOnlySpan<byte> b, int start, int end, int wanted)
    {
        int pos = start;
        while (pos < end)
        {
            int fieldStart = pos;
            var (field, wire, payload, fieldEnd) = NextField(b, ref pos, end);
            if (field == wanted && wire == 2) return (fieldStart, payload, fieldEnd);
        }
        return null;
    }

    /// <summary>One field of protobuf's own output (so well-formed): its number, wire type, payload start and end.</summary>
    static (int Field, int Wire, int Payload, int End) NextField(ReadOnlySpan<byte> b, ref int pos, int end)
    {
        if (!ZeroCopyParser.ReadVarint(b, ref pos, end, out ulong tag)) throw new InvalidOperationException("bad tag");
        int wire = (int)(tag & 7);
        int payload = pos;
        switch (wire)
        {
            case 0: ZeroCopyParser.ReadVarint(b, ref pos, end, out _); payload = pos; break;
            case 1: pos += 8; break;
            case 5: pos += 4; break;
            case 2:
                ZeroCopyParser.ReadVarint(b, ref pos, end, out ulong length);
                payload = pos;
                pos += (int)length;
                break;
            default: throw new InvalidOperationException($"wire type {wire} in protobuf's own output");
        }
        return ((int)(tag >> 3), wire, payload, pos);
    }

    static int VarintSize(ulong v) { int n = 1; while (v >= 0x80) { v >>= 7; n++; } return n; }

    static void WriteVarint(MemoryStream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }
}
