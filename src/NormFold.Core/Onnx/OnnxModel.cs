using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Onnx;

/// <summary>
/// A loaded ONNX model. The generated <see cref="ModelProto"/> is the single source of truth, so everything the
/// file held (metadata, functions, unknown fields) is written back. Tensors stored as external data stay where they
/// are until their bytes are needed.
/// </summary>
/// <remarks>
/// Weights are not copied out of the file: raw_data, and the main graph's large packed float_data / double_data
/// (which hold the same little-endian bytes), are views of the mapped file. In <see cref="Proto"/> such a float_data or
/// double_data tensor shows its elements as raw_data; <see cref="ModelWriter.Save"/> writes it back as the field it
/// was. float16/bfloat16 elements stored one per int32_data entry cannot be views: they are copied.
/// </remarks>
public sealed class OnnxModel : IDisposable
{
    public ModelProto Proto { get; }
    /// <summary>The model file's path, or null for a model built in memory.</summary>
    public string? SourcePath { get; }
    /// <summary>Folder that external data locations are relative to.</summary>
    public string? BaseDirectory { get; }

    /// <summary>The model file's bytes; the main graph's initializers are views into them.</summary>
    FileBytes? _file;
    /// <summary>External data files, each opened once, when a tensor in it is first read; each tensor's bytes are a view
    /// of its own range (so data files may exceed 2 GB).</summary>
    readonly Dictionary<string, FileBytes> _externalFiles = new(StringComparer.Ordinal);
    readonly Dictionary<TensorProto, ReadOnlyMemory<byte>> _externalBytes = new(ReferenceEqualityComparer.Instance);
    bool _disposed;
    /// <summary>Tensors whose bytes are computed only when saved or read (see <see cref="Defer"/>).</summary>
    readonly Dictionary<TensorProto, DeferredScaling> _deferred = new(ReferenceEqualityComparer.Instance);
    /// <summary>max|W| of weights read ahead of the rules (FoldedValues.Prefetch), with the bytes they were read from.</summary>
    internal readonly Dictionary<TensorProto, (ByteString Source, double Max)> MaxAbsCache = new(ReferenceEqualityComparer.Instance);

    /// <summary>Initializers whose raw_data is a view of a packed float_data (4) or double_data (10) field in the file:
    /// saved back as that field while their raw_data is still that view (see <see cref="TypedViewField"/>).</summary>
    readonly Dictionary<TensorProto, (int Field, ByteString View)> _typedViews = new(ReferenceEqualityComparer.Instance);

    /// <summary>Tensors NormFold created (fold results). Saving puts large ones beside existing external data.</summary>
    internal HashSet<TensorProto> Created { get; } = new(ReferenceEqualityComparer.Instance);
    /// <summary>Set by the pipeline (PipelineOptions.CheckFiniteWhenComputed): deferred scalings made from now on check
    /// their own results, and the pre-check leaves such weights to them.</summary>
    internal bool CheckFiniteWhenComputed { get; set; }

    /// <summary>How messages name the model: the user's path (or words around it), never a temporary file NormFold
    /// wrote it to. Defaults to <see cref="SourcePath"/>.</summary>
    public string? DisplayName { get; init; }

    public OnnxModel(ModelProto proto, string? sourcePath = null)
    {
        Proto = proto;
        SourcePath = sourcePath;
        BaseDirectory = sourcePath is null ? null : Path.GetDirectoryName(Path.GetFullPath(sourcePath));
    }

    /// <summary>Parses a model file without copying its weights (they stay in the mapped file until
    /// <see cref="Dispose"/>). External data files are mapped when first read.</summary>
    public static OnnxModel Load(string path) => Load(path, null);

    /// <summary>As <see cref="Load(string)"/>; messages name the model <paramref name="displayName"/> (e.g. the output
    /// path of a model staged in a temporary folder) instead of <paramref name="path"/>.</summary>
    public static OnnxModel Load(string path, string? displayName)
    {
        string name = displayName ?? path;
        var kind = PathGuard.Kind(path); // stat, not open: opening a FIFO blocks
        if (kind == PathGuard.FileKind.Missing || kind == PathGuard.FileKind.Unknown && !File.Exists(path))
            throw new InvalidModelException($"{name}: file not found");
        if (PathGuard.NotRegular(kind) is { } what) throw new InvalidModelException($"{name}: is {what}, not a model file");
        long length = PathGuard.Length(path); // through a symbolic link
        if (length == 0) throw new InvalidModelException($"{name}: file is empty");
        if (length > int.MaxValue)
            throw new InvalidModelException($"{name}: {length} bytes is past protobuf's 2 GB limit; a model that large must keep its weights as external data");
        // Weights stay in the file's mapped pages (see ZeroCopyParser); a plain parse, which copies, is the fallback.
        FileBytes? file = FileBytes.Open(path);
        OnnxModel? model = null;
        try
        {
            var bytes = file.Range(0, (int)length);
            var proto = ZeroCopyParser.TryParse(bytes, out var typed);
            Timeline.Mark("parse");
            if (proto is null)
            {
                proto = ModelProto.Parser.ParseFrom(bytes.Span);
                file.Dispose();
                file = null;
            }
            if (proto.Graph is null)
                throw new InvalidModelException($"{name}: not an ONNX model (it has no graph)");
            model = new OnnxModel(proto, path) { _file = file, DisplayName = displayName };
            file = null; // the model's now
            foreach (var (t, field) in typed) model._typedViews[t] = (field, t.RawData);
            Graph.ModelValidator.Validate(model);
            model.ValidateExternalReferences();
            model.LoadedWithExternalData = model.HasExternalData;
            Timeline.Mark("validate");
            var loaded = model;
            model = null;
            return loaded;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidModelException($"{name}: not an ONNX model (protobuf parse failed: {e.Message})", e);
        }
        finally
        {
            file?.Dispose();
            model?.Dispose(); // failed validation
        }
    }

    /// <summary>Releases the mapped model and data files: the model's raw tensor bytes are unreadable afterwards.</summary>
    public void Dispose()
    {
        _file?.Dispose();
        lock (_externalBytes)
        {
            _disposed = true;
            foreach (var f in _externalFiles.Values) f.Dispose();
            _externalFiles.Clear();
            _externalBytes.Clear();
        }
    }

    /// <summary>The files this model was read from (resolved, see <see cref="PathGuard"/>), each with what it is — the
    /// files a save must never replace.</summary>
    public Dictionary<string, string> InputFiles()
    {
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        if (SourcePath is null) return files;
        files[PathGuard.Resolve(SourcePath)] = "the input model";
        var seen = new HashSet<string>(StringComparer.Ordinal); // resolve each data file once, not once per tensor
        foreach (var t in AllTensors())
            if (IsExternal(t) && seen.Add(ExternalPath(t)))
                files.TryAdd(ExternalPath(t), $"the input's external data file '{ParseExternal(t).Location}'");
        return files;
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
    internal bool LoadedWithExternalData { get; private set; }

    internal static bool IsExternal(TensorProto t) => t.DataLocation == TensorProto.Types.DataLocation.External;

    /// <summary>Bytes of a tensor's data in raw little-endian layout (raw_data — a float_data/double_data view included —,
    /// external file or a deferred result, which this computes); empty when the tensor uses the typed fields
    /// (float_data, int32_data, …).</summary>
    internal ReadOnlySpan<byte> RawBytes(TensorProto t) => RawMemory(t).Span;

    /// <summary>The same bytes as <see cref="RawBytes"/>, as memory (for work split across threads).</summary>
    internal ReadOnlyMemory<byte> RawMemory(TensorProto t)
    {
        lock (_deferred)
            if (_deferred.Remove(t, out var deferred))
                t.RawData = UnsafeByteOperations.UnsafeWrap(deferred.Materialize());
        return IsExternal(t) ? ReadExternal(t) : t.RawData.Memory;
    }

    /// <summary>Length of <see cref="RawBytes"/> without computing a deferred tensor.</summary>
    internal long RawLength(TensorProto t)
    {
        lock (_deferred) if (_deferred.TryGetValue(t, out var d)) return d.Length;
        return IsExternal(t) ? ReadExternal(t).Length : t.RawData.Length;
    }

    /// <summary>Whether the tensor's elements are raw bytes (raw_data, external, or deferred) rather than typed fields
    /// (a float_data view counts as typed: it is saved as it was, inline).</summary>
    internal bool HasRawBytes(TensorProto t)
    {
        lock (_deferred) if (_deferred.ContainsKey(t)) return true;
        return t.HasRawData && TypedViewField(t) is null || IsExternal(t);
    }

    /// <summary>4 (float_data) or 10 (double_data) when <paramref name="t"/>'s raw_data is still the view of that packed
    /// field it was loaded as (and nothing else was put in the typed fields since); else null.</summary>
    internal int? TypedViewField(TensorProto t) =>
        _typedViews.TryGetValue(t, out var v) && t.HasRawData && ReferenceEquals(t.RawData, v.View) && !IsExternal(t)
        && t.FloatData.Count == 0 && t.DoubleData.Count == 0 ? v.Field : null;

    /// <summary>
    /// Makes <paramref name="t"/>'s raw bytes the result of <paramref name="scaling"/>, computed when the model is saved
    /// (straight into the output, a chunk at a time) or when something reads the tensor. Until then t.RawData is empty:
    /// read such tensors through <see cref="RawBytes"/>.
    /// </summary>
    internal void Defer(TensorProto t, DeferredScaling scaling)
    {
        t.ClearRawData();
        lock (_deferred) _deferred[t] = scaling;
    }

    internal bool IsDeferred(TensorProto t)
    {
        lock (_deferred) return _deferred.ContainsKey(t);
    }

    /// <summary>Writes a tensor's raw bytes to <paramref name="output"/>; a deferred tensor is computed a chunk at a time.</summary>
    internal void WriteRaw(TensorProto t, Stream output)
    {
        DeferredScaling? deferred;
        lock (_deferred) _deferred.TryGetValue(t, out deferred);
        if (deferred is null) FileBytes.WriteTo(RawMemory(t), output);
        else deferred.WriteTo(output);
    }

    /// <summary>Bytes [offset, offset + chunk.Length) of a tensor's raw bytes into <paramref name="chunk"/> (offset a
    /// multiple of the element size); a deferred tensor computes only those.</summary>
    internal void FillRaw(TensorProto t, int offset, Span<byte> chunk)
    {
        DeferredScaling? deferred;
        lock (_deferred) _deferred.TryGetValue(t, out deferred);
        if (deferred is null) FileBytes.CopyTo(RawMemory(t), offset, chunk);
        else deferred.Fill(chunk, offset);
    }

    /// <summary>The overflow checks of the deferred scalings that have one (see PipelineOptions.CheckFiniteWhenComputed),
    /// without computing them: for a fold that is not saved. Throws <see cref="Tensors.ScaledWeightOverflow"/>.</summary>
    internal void CheckDeferredFinite() => CheckDeferredFinite(_ => true);

    /// <summary>The same for the deferred tensors <paramref name="which"/> selects (those a save does not write).</summary>
    internal void CheckDeferredFinite(Func<TensorProto, bool> which)
    {
        List<DeferredScaling> list;
        lock (_deferred) list = [.. _deferred.Where(d => which(d.Key)).Select(d => d.Value)];
        foreach (var d in list) d.CheckAllFinite();
    }

    /// <summary>Computes every deferred tensor that <paramref name="keep"/> rejects (e.g. those a writer cannot stream).</summary>
    internal void MaterializeDeferred(Func<TensorProto, bool> keep)
    {
        List<TensorProto> list;
        lock (_deferred) list = _deferred.Keys.Where(t => !keep(t)).ToList();
        foreach (var t in list) RawMemory(t);
    }

    internal double[] ReadDoubles(TensorProto t)
    {
        try { return TensorData.ReadDoubles(t, RawBytes(t)); }
        catch (FormatException e) { throw new InvalidModelException($"{Describe()}: {e.Message}", e); }
    }

    internal long[] ReadInt64s(TensorProto t)
    {
        try { return TensorData.ReadInt64s(t, RawBytes(t)); }
        catch (FormatException e) { throw new InvalidModelException($"{Describe()}: {e.Message}", e); }
    }

    internal string Describe() => DisplayName ?? SourcePath ?? "<in-memory model>";

    internal readonly record struct ExternalLocation(string Location, long Offset, long Length);

    /// <summary>A tensor's external_data entries; refuses a missing or NUL-holding location and offsets or lengths
    /// that are not integers in 0..2^63-1.</summary>
    internal static ExternalLocation ParseExternal(TensorProto t) => ParseExternal(t, "");

    static ExternalLocation ParseExternal(TensorProto t, string where)
    {
        string? location = null;
        string? offset = null, length = null;
        foreach (var kv in t.ExternalData)
        {
            switch (kv.Key)
            {
                case "location": location = kv.Value; break;
                case "offset": offset = kv.Value; break;
                case "length": length = kv.Value; break;
            }
        }
        if (string.IsNullOrEmpty(location))
            throw new InvalidModelException($"{where}tensor '{t.Name}': external data without a 'location'");
        if (location.Contains('\0'))
            throw new InvalidModelException($"{where}tensor '{t.Name}': external data location '{location.Replace("\0", "\\0")}' contains a NUL character");
        return new ExternalLocation(location, Parse(offset, "offset", 0), Parse(length, "length", -1));

        long Parse(string? text, string key, long absent) =>
            text is null ? absent
            : long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v
            : throw new InvalidModelException($"{where}tensor '{t.Name}': external data {key} '{text}' in '{location}' is not an integer in 0..{long.MaxValue}");
    }

    /// <summary>The model's real folders: where its path's folder finally leads, and the folder of the file the path
    /// finally names (they differ when the model is a link, e.g. a Hugging Face cache snapshot linking into blobs).</summary>
    string[] RealFolders => _realFolders ??= SourcePath is null ? []
        : new[] { PathGuard.Resolve(BaseDirectory!), Path.GetDirectoryName(PathGuard.Resolve(SourcePath))! }.Distinct().ToArray();
    string[]? _realFolders;
    /// <summary>Each location resolved once (many tensors share one data file).</summary>
    readonly Dictionary<string, string> _resolvedLocations = new(StringComparer.Ordinal);

    /// <summary>Absolute real path of a tensor's external file (every symbolic link followed); refuses locations
    /// that are absolute or lead out of the model's real folder, through links to files or folders included.</summary>
    internal string ExternalPath(TensorProto t)
    {
        var loc = ParseExternal(t, Where);
        lock (_resolvedLocations)
        {
            if (_resolvedLocations.TryGetValue(loc.Location, out var known)) return known;
            if (BaseDirectory is null)
                throw new InvalidModelException($"tensor '{t.Name}': external data '{loc.Location}' but the model was not loaded from a file");
            if (Path.IsPathRooted(loc.Location))
                throw new InvalidModelException($"{Where}tensor '{t.Name}': external data location '{loc.Location}' must be relative to the model's folder");
            string full = Path.GetFullPath(Path.Combine(BaseDirectory, loc.Location));
            if (!Within(full, BaseDirectory))
                throw new InvalidModelException($"{Where}tensor '{t.Name}': external data location '{loc.Location}' leaves the model's folder");
            string real = PathGuard.Resolve(full);
            if (!RealFolders.Any(f => Within(real, f)))
                throw new InvalidModelException($"{Where}tensor '{t.Name}': external data location '{loc.Location}' leads through a link to '{real}', outside the model's folder");
            return _resolvedLocations[loc.Location] = real;
        }
    }

    static bool Within(string path, string folder) =>
        path.StartsWith(folder.EndsWith(Path.DirectorySeparatorChar) ? folder : folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>"file: " for messages, naming the user's model file.</summary>
    string Where => $"{Describe()}: ";

    /// <summary>Bytes the tensor's elements take, or null when its type has no fixed width (strings) or its dims are
    /// not a valid shape (the model validator names those).</summary>
    static long? ExpectedBytes(TensorProto t)
    {
        int size = ElementType.Size(t.DataType);
        if (size == 0) return null;
        try { return checked(TensorData.ElementCount(t) * size); }
        catch (Exception e) when (e is OverflowException or FormatException) { return null; }
    }

    /// <summary>The byte range [offset, offset + length) a tensor takes in its data file of <paramref name="fileLength"/>
    /// bytes, checked: a given length must be the tensor's size; without one, the tensor's size (or the rest of the file
    /// for types without a fixed width).</summary>
    long CheckedRange(TensorProto t, ExternalLocation loc, long fileLength)
    {
        long? expected = ExpectedBytes(t);
        if (loc.Length >= 0 && expected is { } e && loc.Length != e)
            throw new InvalidModelException($"{Where}tensor '{t.Name}': external data length {loc.Length} in '{loc.Location}' does not match the tensor's {e} bytes ({ElementType.Name(t.DataType)} [{string.Join(", ", t.Dims)}])");
        if (loc.Offset > fileLength)
            throw new InvalidModelException($"{Where}tensor '{t.Name}': external data offset {loc.Offset} lies beyond the end of '{loc.Location}' ({fileLength} bytes)");
        long length = loc.Length >= 0 ? loc.Length : expected ?? fileLength - loc.Offset;
        if (length > fileLength - loc.Offset)
            throw new InvalidModelException($"{Where}tensor '{t.Name}': external data at offset {loc.Offset}, {length} bytes, lies beyond the end of '{loc.Location}' ({fileLength} bytes)");
        return length;
    }

    /// <summary>Stats a data file without opening it: it must exist and be a regular file (a FIFO would block the read
    /// forever, a device would give endless or changing bytes).</summary>
    long DataFileLength(TensorProto t, ExternalLocation loc, string path)
    {
        var kind = PathGuard.Kind(path);
        if (kind == PathGuard.FileKind.Missing)
            throw new InvalidModelException($"{Where}tensor '{t.Name}': external data file '{loc.Location}' not found");
        if (PathGuard.NotRegular(kind) is { } what)
            throw new InvalidModelException($"{Where}tensor '{t.Name}': external data file '{loc.Location}' is {what}, not a regular file");
        return new FileInfo(path).Length;
    }

    void ValidateExternalReferences()
    {
        var lengths = new Dictionary<string, long>(StringComparer.Ordinal); // one look at each file, not one per tensor
        foreach (var t in AllTensors())
        {
            if (!IsExternal(t)) continue;
            string path = ExternalPath(t);
            var loc = ParseExternal(t, Where);
            if (!lengths.TryGetValue(path, out long fileLength))
                lengths[path] = fileLength = DataFileLength(t, loc, path);
            CheckedRange(t, loc, fileLength);
        }
    }

    ReadOnlyMemory<byte> ReadExternal(TensorProto t)
    {
        lock (_externalBytes)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_externalBytes.TryGetValue(t, out var cached)) return cached;
            string path = ExternalPath(t);
            var loc = ParseExternal(t, Where);
            if (!_externalFiles.TryGetValue(path, out var file))
            {
                DataFileLength(t, loc, path); // never open a FIFO or a device
                try { _externalFiles[path] = file = FileBytes.Open(path); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new InvalidModelException($"{Where}tensor '{t.Name}': cannot read external data '{loc.Location}': {NormFoldIOException.Describe(e)}", e);
                }
            }
            long length = CheckedRange(t, loc, file.Length);
            if (length > Array.MaxLength)
                throw new InvalidModelException($"{Where}tensor '{t.Name}': {length} bytes of external data; NormFold handles tensors up to 2 GB");
            return _externalBytes[t] = file.Range(loc.Offset, (int)length);
        }
    }

    /// <summary>Every dense tensor in the model: initializers, Constant/attribute tensors, in subgraphs and
    /// functions and training graphs too.</summary>
    internal IEnumerable<TensorProto> AllTensors()
    {
        // Index loops throughout: a foreach over a protobuf RepeatedField allocates an enumerator each time.
        foreach (var g in AllGraphs())
        {
            var initializers = g.Initializer;
            for (int i = 0; i < initializers.Count; i++) yield return initializers[i];
            foreach (var s in g.SparseInitializer) { if (s.Values != null) yield return s.Values; if (s.Indices != null) yield return s.Indices; }
            var nodes = g.Node;
            for (int i = 0; i < nodes.Count; i++)
                if (HasAttributeTensors(nodes[i])) foreach (var t in AttributeTensors(nodes[i])) yield return t;
        }
        foreach (var f in Proto.Functions)
            foreach (var n in f.Node) foreach (var t in AttributeTensors(n)) yield return t;
    }

    static bool HasAttributeTensors(NodeProto n)
    {
        var attributes = n.Attribute;
        for (int i = 0; i < attributes.Count; i++)
            if (attributes[i].T != null || attributes[i].Tensors.Count > 0) return true;
        return false;
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
    internal IEnumerable<GraphProto> AllGraphs()
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
            var nodes = g.Node;
            for (int i = 0; i < nodes.Count; i++)
                if (HasSubgraphs(nodes[i])) foreach (var sg in Subgraphs(nodes[i])) stack.Push(sg);
        }
    }

    /// <summary>Whether <see cref="Subgraphs"/> yields anything (without allocating, unlike it).</summary>
    internal static bool HasSubgraphs(NodeProto n)
    {
        var attributes = n.Attribute;
        for (int i = 0; i < attributes.Count; i++)
            if (attributes[i].G != null || attributes[i].Graphs.Count > 0) return true;
        return false;
    }

    internal static IEnumerable<GraphProto> Subgraphs(NodeProto n)
    {
        foreach (var a in n.Attribute)
        {
            if (a.G != null) yield return a.G;
            foreach (var g in a.Graphs) yield return g;
        }
    }
}
