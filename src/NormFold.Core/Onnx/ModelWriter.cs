using Google.Protobuf;
using NormFold.Onnx.Proto;

namespace NormFold.Onnx;

public enum ExternalDataMode
{
    /// <summary>Tensors that were external stay external (in a new file beside the output); the rest stay inline.</summary>
    Keep,
    /// <summary>Every raw tensor of at least <see cref="SaveOptions.ExternalThreshold"/> bytes goes to the data file.</summary>
    All,
}

public sealed record SaveOptions
{
    public ExternalDataMode ExternalData { get; init; } = ExternalDataMode.Keep;
    /// <summary>Data file name, relative to the output's folder; default "&lt;output file name&gt;.data".</summary>
    public string? ExternalFileName { get; init; }
    public long ExternalThreshold { get; init; } = 1024;
}

/// <summary>
/// Writes a model atomically: to temporary files beside the target, renamed into place only when complete, so a
/// failure never leaves a partial output. The input's files are never written.
/// </summary>
public static class ModelWriter
{
    /// <summary>Protobuf's hard limit for one message.</summary>
    internal const long ProtobufLimit = int.MaxValue;
    const int Alignment = 4096;
    /// <summary>The output streams' buffer, for the small pieces between payloads (payloads of a chunk or more are written
    /// straight from their own buffers): below the large-object size, so it never triggers a full collection.</summary>
    const int StreamBuffer = 1 << 16;
    static readonly byte[] Zeros = new byte[Alignment];

    /// <summary>Refuses an output path that is a folder or lies in a folder that does not exist.</summary>
    internal static void CheckOutputPath(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full) || path.EndsWith('/') || path.EndsWith(Path.DirectorySeparatorChar))
            throw new InvalidModelException($"{path}: is a folder; give the output model's file name");
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new InvalidModelException($"{path}: output folder '{dir}' does not exist");
        if (System.Text.Encoding.UTF8.GetByteCount(Path.GetFileName(full)) > 255)
            throw new InvalidModelException($"{path}: the file name is longer than 255 bytes");
    }

    public static void Save(OnnxModel model, string path, SaveOptions? options = null)
    {
        options ??= new SaveOptions();
        CheckOutputPath(path);
        // A symbolic link is written through, to the file it names; a device or a pipe is refused.
        string full = PathGuard.Resolve(path);
        PathGuard.CheckRegularOrAbsent(path, full);
        var inputs = model.InputFiles();
        if (inputs.TryGetValue(full, out string? what))
            throw new InvalidModelException($"{path}: refusing to overwrite {what}; choose another output path");
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new InvalidModelException($"{path}: output folder '{dir}' does not exist");

        var moved = SelectExternal(model, options);
        var (dataName, dataPath) = moved.Count > 0 ? DataFile(path, full, dir, options, inputs) : (null, null);

        var movedSet = new HashSet<TensorProto>(moved, ReferenceEqualityComparer.Instance);
        long inlineBytes = 0;
        foreach (var t in model.AllTensors())
            if (!movedSet.Contains(t) && !OnnxModel.IsExternal(t)) inlineBytes += model.RawLength(t);
        if (inlineBytes > ProtobufLimit - (64 << 20))
            throw new InvalidModelException($"{path}: the model's inline tensors hold {inlineBytes} bytes, more than protobuf's 2 GB limit; save it with external data");

        string tmpModel = TempName(full);
        string? tmpData = dataPath is null ? null : TempName(dataPath);
        TempFiles.Track(tmpModel);
        if (tmpData != null) TempFiles.Track(tmpData);
        var restore = new List<(TensorProto Tensor, TensorProto Saved)>();
        try
        {
            // Opened first: a folder we cannot write in fails here, before any data is written.
            FileStream stream;
            try { stream = new FileStream(tmpModel, FileMode.CreateNew, FileAccess.Write, FileShare.None, StreamBuffer); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new InvalidModelException($"{path}: cannot write in '{dir}': {e.GetType().Name.Replace("Exception", "")}", e);
            }
            using (stream)
            {
                if (tmpData != null)
                {
                    using var data = new FileStream(tmpData, FileMode.CreateNew, FileAccess.Write, FileShare.None, StreamBuffer);
                    foreach (var t in moved)
                    {
                        data.Write(Zeros.AsSpan(0, (int)((Alignment - data.Position % Alignment) % Alignment)));
                        long offset = data.Position;
                        model.WriteRaw(t, data);
                        long length = data.Position - offset;
                        restore.Add((t, StorageFields(t)));
                        t.ClearRawData();
                        t.ExternalData.Clear();
                        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = dataName });
                        t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
                        t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.ToString() });
                        t.DataLocation = TensorProto.Types.DataLocation.External;
                    }
                }
                WriteModel(model, stream);
                Timeline.Mark("write");
            }
            if (tmpData != null) File.Move(tmpData, dataPath!, overwrite: true);
            File.Move(tmpModel, full, overwrite: true);
            Timeline.Mark("close+rename");
        }
        finally
        {
            foreach (var (t, saved) in restore) RestoreStorage(t, saved);
            TryDelete(tmpModel);
            if (tmpData != null) TryDelete(tmpData);
            TempFiles.Untrack(tmpModel);
            if (tmpData != null) TempFiles.Untrack(tmpData);
        }
    }

    /// <summary>The checks <see cref="Save"/> makes of the data file a save of <paramref name="model"/> to
    /// <paramref name="path"/> writes (none when no tensor goes external), with messages naming <paramref name="path"/>:
    /// for a caller that saves into a staging folder first.</summary>
    internal static void CheckDataFile(OnnxModel model, string path, SaveOptions options)
    {
        if (SelectExternal(model, options).Count == 0) return;
        string full = PathGuard.Resolve(path);
        DataFile(path, full, Path.GetDirectoryName(full)!, options, model.InputFiles());
    }

    /// <summary>The data file's name (relative to the output's folder) and resolved path, checked: relative, in an
    /// existing folder, a regular file or absent, not the model itself nor one of the input's files.</summary>
    static (string? Name, string? Path) DataFile(string path, string full, string dir, SaveOptions options, Dictionary<string, string> inputs)
    {
        if (PathGuard.Resolve(Path.GetDirectoryName(Path.GetFullPath(path))!) != dir)
            throw new InvalidModelException($"{path}: is a link into another folder; its data file would not be beside it (give the real path)");
        string dataName = options.ExternalFileName ?? Path.GetFileName(full) + ".data";
        if (dataName.Length == 0 || Path.IsPathRooted(dataName) || dataName.Split('/', '\\').Contains(".."))
            throw new InvalidModelException($"{path}: data file '{dataName}' must be a file name relative to the output's folder");
        string dataPath = PathGuard.Resolve(Path.Combine(dir, dataName));
        if (!Directory.Exists(Path.GetDirectoryName(dataPath)))
            throw new InvalidModelException($"{path}: data file '{dataName}': folder '{Path.GetDirectoryName(dataPath)}' does not exist");
        PathGuard.CheckRegularOrAbsent($"{path}: data file '{dataName}'", dataPath);
        if (System.Text.Encoding.UTF8.GetByteCount(Path.GetFileName(dataPath)) > 255)
            throw new InvalidModelException($"{path}: data file '{dataName}': the file name is longer than 255 bytes");
        if (dataPath == full)
            throw new InvalidModelException($"{path}: its data file '{dataName}' would be the model file itself; choose another name");
        if (inputs.TryGetValue(dataPath, out var what))
            throw new InvalidModelException($"{path}: its data file '{dataName}' would overwrite {what}; choose another name");
        return (dataName, dataPath);
    }

    /// <summary>
    /// The model's bytes as <see cref="Save"/> writes its model file, to <paramref name="output"/>: folded weights
    /// computed, weights loaded from packed float_data / double_data written back as those fields. Tensors stored as
    /// external data stay external, naming their files relative to the model's folder; all others are inline.
    /// </summary>
    public static void Write(OnnxModel model, Stream output)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(output);
        long inlineBytes = model.AllTensors().Where(t => !OnnxModel.IsExternal(t)).Sum(model.RawLength);
        if (inlineBytes > ProtobufLimit - (64 << 20))
            throw new InvalidModelException($"{model.Describe()}: the model's inline tensors hold {inlineBytes} bytes, more than protobuf's 2 GB limit; save it with external data");
        WriteModel(model, output);
    }

    static void WriteModel(OnnxModel model, Stream output)
    {
        // Deferred folds are computed into the output; only the main graph's initializers can be (SplicedWriter).
        // Others are computed now, unless nothing in the model holds them any more.
        var main = new HashSet<TensorProto>(model.Proto.Graph?.Initializer ?? [], ReferenceEqualityComparer.Instance);
        var live = new HashSet<TensorProto>(model.AllTensors(), ReferenceEqualityComparer.Instance);
        model.MaterializeDeferred(t => main.Contains(t) || OnnxModel.IsExternal(t) || !live.Contains(t));
        // One nothing holds any more (a later fold into the same op composed its factors from the original weight) is
        // not computed, but its overflow check still counts: the pre-check would have refused the fold that made it.
        model.CheckDeferredFinite(t => !live.Contains(t));
        SplicedWriter.Write(model, output);
    }

    static List<TensorProto> SelectExternal(OnnxModel model, SaveOptions options)
    {
        var list = new List<TensorProto>();
        var seen = new HashSet<TensorProto>(ReferenceEqualityComparer.Instance);
        bool hadExternal = model.LoadedWithExternalData || model.HasExternalData;
        foreach (var t in model.AllTensors())
        {
            if (!seen.Add(t)) continue;
            bool large = model.HasRawBytes(t) && !OnnxModel.IsExternal(t) && model.RawLength(t) >= options.ExternalThreshold;
            // Keep: what was external stays so, and large new tensors join it (a >2 GB model stays saveable).
            bool external = OnnxModel.IsExternal(t)
                || (large && options.ExternalData == ExternalDataMode.All)
                || (large && hadExternal && model.Created.Contains(t));
            if (external) list.Add(t);
        }
        return list;
    }

    static TensorProto StorageFields(TensorProto t)
    {
        var saved = new TensorProto();
        if (t.HasRawData) saved.RawData = t.RawData;
        saved.ExternalData.AddRange(t.ExternalData);
        if (t.HasDataLocation) saved.DataLocation = t.DataLocation;
        return saved;
    }

    static void RestoreStorage(TensorProto t, TensorProto saved)
    {
        t.ClearRawData();
        if (saved.HasRawData) t.RawData = saved.RawData;
        t.ExternalData.Clear();
        t.ExternalData.AddRange(saved.ExternalData);
        t.ClearDataLocation();
        if (saved.HasDataLocation) t.DataLocation = saved.DataLocation;
    }

    /// <summary>A hidden file beside the target, short whatever the target's name (a 250-character name stays legal).</summary>
    static string TempName(string path) =>
        Path.Combine(Path.GetDirectoryName(path)!, $".normfold-{Guid.NewGuid().ToString("N")[..12]}.tmp");

    static void TryDelete(string path)
    {
        try { if (File.Exists(path)) File.Delete(path); } catch (IOException) { }
    }
}
