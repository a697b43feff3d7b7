using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Onnx;

/// <summary>
/// A loaded ONNX model. The generated <see cref="ModelProto"/> is the single source of truth, so everything the
/// file held (metadata, functions, unknown fields) is written back. Tensors stored as external data stay where they
/// are until their bytes are needed.
/// </summary>
public sealed class OnnxModel
{
    public ModelProto Proto { get; }
    /// <summary>The model file's path, or null for a model built in memory.</summary>
    public string? SourcePath { get; }
    /// <summary>Folder that external data locations are relative to.</summary>
    public string? BaseDirectory { get; }

    readonly Dictionary<TensorProto, ArraySegment<byte>> _externalBytes = new(ReferenceEqualityComparer.Instance);

    /// <summary>Tensors whose raw bytes only this model holds (its own load buffer, or external bytes it read), so a
    /// rewrite may reuse them once nothing reads the tensor any more.</summary>
    readonly Dictionary<TensorProto, ArraySegment<byte>> _owned = new(ReferenceEqualityComparer.Instance);

    internal bool TryGetOwnedBytes(TensorProto t, out ArraySegment<byte> bytes)
    {
        lock (_owned) return _owned.TryGetValue(t, out bytes);
    }

    internal void Own(TensorProto t, ArraySegment<byte> bytes)
    {
        lock (_owned) _owned[t] = bytes;
    }

    internal void Disown(TensorProto t)
    {
        lock (_owned) _owned.Remove(t);
    }

    /// <summary>Tensors NormFold created (fold results). Saving puts large ones beside existing external data.</summary>
    internal HashSet<TensorProto> Created { get; } = new(ReferenceEqualityComparer.Instance);

    public OnnxModel(ModelProto proto, string? sourcePath = null)
    {
        Proto = proto;
        SourcePath = sourcePath;
        BaseDirectory = sourcePath is null ? null : Path.GetDirectoryName(Path.GetFullPath(sourcePath));
    }

    /// <summary>Parses a model file once, streaming from disk. External data is resolved lazily.</summary>
    public static OnnxModel Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found");
        ModelProto proto;
        List<(TensorProto, ArraySegment<byte>)>? owned = null;
        try
        {
            long length = new FileInfo(path).Length;
            if (length == 0) throw new ModelFormatException($"{path}: file is empty");
            if (length > int.MaxValue)
                throw new ModelFormatException($"{path}: {length} bytes is past protobuf's 2 GB limit; a model that large must keep its weights as external data");
            // One read; weights stay in this buffer (see ZeroCopyParser). Its plain parse is the fallback.
            var bytes = File.ReadAllBytes(path);
            proto = ZeroCopyParser.TryParse(bytes, out var slices) ?? ModelProto.Parser.ParseFrom(bytes);
            owned = slices;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelFormatException($"{path}: not an ONNX model (protobuf parse failed: {e.Message})", e);
        }
        if (proto.Graph is null)
            throw new ModelFormatException($"{path}: not an ONNX model (it has no graph)");
        var model = new OnnxModel(proto, path);
        foreach (var (t, bytes) in owned ?? []) model.Own(t, bytes);
        model.ValidateExternalReferences();
        model.LoadedWithExternalData = model.HasExternalData;
        return model;
    }

    public static OnnxModel FromBytes(byte[] bytes) => new(ModelProto.Parser.ParseFrom(bytes));

    /// <summary>The version of the default ONNX domain ("" or "ai.onnx") that the model imports, or 0 if none.</summary>
    public long DefaultOpset
    {
        get
        {
            foreach (var o in Proto.OpsetImport)
                if (o.Domain is "" or "ai.onnx") return o.Version;
            return 0;
        }
    }

    public bool HasExternalData => AllTensors().Any(IsExternal);

    /// <summary>Whether the file kept weights as external data when loaded (saving keeps that layout even if every
    /// external tensor was since replaced).</summary>
    public bool LoadedWithExternalData { get; private set; }

    public static bool IsExternal(TensorProto t) => t.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Bytes of a tensor's data in raw little-endian layout (raw_data or external file); empty when the
    /// tensor uses the typed fields (float_data, int32_data, …).</summary>
    public ReadOnlySpan<byte> RawBytes(TensorProto t)
    {
        if (!IsExternal(t)) return t.RawData.Span;
        lock (_externalBytes)
        {
            if (!_externalBytes.TryGetValue(t, out var bytes))
            {
                bytes = ReadExternal(t);
                _externalBytes[t] = bytes;
                Own(t, bytes);
            }
            return bytes;
        }
    }

    /// <summary>The same bytes as <see cref="RawBytes"/>, as memory (for work split across threads).</summary>
    public ReadOnlyMemory<byte> RawMemory(TensorProto t)
    {
        if (!IsExternal(t)) return t.RawData.Memory;
        RawBytes(t);
        lock (_externalBytes) return _externalBytes[t];
    }

    /// <summary>Drops a tensor's cached external bytes.</summary>
    internal void ForgetExternal(TensorProto t)
    {
        lock (_externalBytes) _externalBytes.Remove(t);
        Disown(t);
    }

    public double[] ReadDoubles(TensorProto t)
    {
        try { return TensorData.ReadDoubles(t, RawBytes(t)); }
        catch (FormatException e) { throw new ModelFormatException($"{Describe()}: {e.Message}", e); }
    }

    public long[] ReadInt64s(TensorProto t)
    {
        try { return TensorData.ReadInt64s(t, RawBytes(t)); }
        catch (FormatException e) { throw new ModelFormatException($"{Describe()}: {e.Message}", e); }
    }

    internal string Describe() => SourcePath ?? "<model>";

    public readonly record struct ExternalLocation(string Location, long Offset, long Length);

    public static ExternalLocation ParseExternal(TensorProto t)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (var kv in t.ExternalData)
        {
            switch (kv.Key)
            {
                case "location": location = kv.Value; break;
                case "offset": offset = ParseLong(t, kv); break;
                case "length": length = ParseLong(t, kv); break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw new ModelFormatException($"tensor '{t.Name}': external data without a 'location'");
        return new ExternalLocation(location, offset, length);
    }

    static long ParseLong(TensorProto t, StringStringEntryProto kv) =>
        long.TryParse(kv.Value, out long v) && v >= 0
            ? v
            : throw new ModelFormatException($"tensor '{t.Name}': external data '{kv.Key}' is not a non-negative integer: '{kv.Value}'");

    /// <summary>Absolute path of a tensor's external file; refuses locations that leave the model's folder.</summary>
    public string ExternalPath(TensorProto t)
    {
        var loc = ParseExternal(t);
        if (BaseDirectory is null)
            throw new ModelFormatException($"tensor '{t.Name}': external data '{loc.Location}' but the model was not loaded from a file");
        if (Path.IsPathRooted(loc.Location))
            throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': external data location '{loc.Location}' must be relative to the model's folder");
        string full = Path.GetFullPath(Path.Combine(BaseDirectory, loc.Location));
        string root = BaseDirectory.EndsWith(Path.DirectorySeparatorChar) ? BaseDirectory : BaseDirectory + Path.DirectorySeparatorChar;
        if (!full.StartsWith(root, StringComparison.Ordinal))
            throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': external data location '{loc.Location}' leaves the model's folder");
        return full;
    }

    void ValidateExternalReferences()
    {
        foreach (var t in AllTensors())
        {
            if (!IsExternal(t)) continue;
            string path = ExternalPath(t);
            var loc = ParseExternal(t);
            if (!File.Exists(path))
                throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': external data file '{loc.Location}' not found");
            long fileLength = new FileInfo(path).Length;
            long length = loc.Length >= 0 ? loc.Length : fileLength - loc.Offset;
            if (loc.Offset + length > fileLength)
                throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': external data [{loc.Offset}, {loc.Offset + length}) lies beyond the end of '{loc.Location}' ({fileLength} bytes)");
        }
    }

    /// <summary>Open handles of external data files, one per file for the model's lifetime (not one open per tensor).</summary>
    readonly Dictionary<string, Microsoft.Win32.SafeHandles.SafeFileHandle> _handles = new(StringComparer.Ordinal);

    /// <summary>Whole external data files, read once when a large tensor is first needed (a fold reads them all
    /// anyway); small tensors (BN statistics, what inspect reads) are read alone.</summary>
    readonly Dictionary<string, byte[]> _files = new(StringComparer.Ordinal);
    const long WholeFileBelow = 1L << 30, LargeTensor = 1 << 16;

    ArraySegment<byte> ReadExternal(TensorProto t)
    {
        string path = ExternalPath(t);
        var loc = ParseExternal(t);
        if (!_handles.TryGetValue(path, out var handle))
            _handles[path] = handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = RandomAccess.GetLength(handle);
        long length = loc.Length >= 0 ? loc.Length : fileLength - loc.Offset;
        if (loc.Offset + length > fileLength || length > Array.MaxLength)
            throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': external data [{loc.Offset}, {loc.Offset + length}) lies beyond the end of '{loc.Location}'");
        if (_files.TryGetValue(path, out var whole) || (length >= LargeTensor && fileLength <= WholeFileBelow))
        {
            if (whole is null) _files[path] = whole = ReadRange(handle, 0, fileLength, t, loc);
            return new ArraySegment<byte>(whole, (int)loc.Offset, (int)length);
        }
        return ReadRange(handle, loc.Offset, length, t, loc);
    }

    byte[] ReadRange(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long offset, long length, TensorProto t, ExternalLocation loc)
    {
        var bytes = GC.AllocateUninitializedArray<byte>((int)length);
        int read = 0;
        while (read < length)
        {
            int n = RandomAccess.Read(handle, bytes.AsSpan(read), offset + read);
            if (n == 0) throw new ModelFormatException($"{Describe()}: tensor '{t.Name}': '{loc.Location}' ended early");
            read += n;
        }
        return bytes;
    }

    /// <summary>Every dense tensor in the model: initializers, Constant/attribute tensors, in subgraphs and
    /// functions and training graphs too.</summary>
    public IEnumerable<TensorProto> AllTensors()
    {
        foreach (var g in AllGraphs())
        {
            foreach (var t in g.Initializer) yield return t;
            foreach (var s in g.SparseInitializer) { if (s.Values != null) yield return s.Values; if (s.Indices != null) yield return s.Indices; }
            foreach (var n in g.Node) foreach (var t in AttributeTensors(n)) yield return t;
        }
        foreach (var f in Proto.Functions)
            foreach (var n in f.Node) foreach (var t in AttributeTensors(n)) yield return t;
    }

    static IEnumerable<TensorProto> AttributeTensors(NodeProto n)
    {
        foreach (var a in n.Attribute)
        {
            if (a.T != null) yield return a.T;
            foreach (var t in a.Tensors) yield return t;
        }
    }

    /// <summary>The main graph, the training graphs and every nested subgraph (If/Loop/Scan bodies, functions' subgraphs).</summary>
    public IEnumerable<GraphProto> AllGraphs()
    {
        var stack = new Stack<GraphProto>();
        if (Proto.Graph != null) stack.Push(Proto.Graph);
        foreach (var ti in Proto.TrainingInfo)
        {
            if (ti.Initialization != null) stack.Push(ti.Initialization);
            if (ti.Algorithm != null) stack.Push(ti.Algorithm);
        }
        foreach (var f in Proto.Functions)
            foreach (var n in f.Node) foreach (var sg in Subgraphs(n)) stack.Push(sg);
        while (stack.Count > 0)
        {
            var g = stack.Pop();
            yield return g;
            foreach (var n in g.Node) foreach (var sg in Subgraphs(n)) stack.Push(sg);
        }
    }

    public static IEnumerable<GraphProto> Subgraphs(NodeProto n)
    {
        foreach (var a in n.Attribute)
        {
            if (a.G != null) yield return a.G;
            foreach (var g in a.Graphs) yield return g;
        }
    }
}
