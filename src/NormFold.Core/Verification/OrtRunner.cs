using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NormFold.Onnx;

namespace NormFold.Verification;

public enum OrtLevel { Disable, Basic, Extended, All }

/// <summary>Declared input or output of a session: element type and dims (-1 where dynamic, with its symbol);
/// <paramref name="UnknownRank"/>: declared without a shape at all (any rank; <paramref name="Dims"/> is empty).</summary>
internal sealed record TensorSignature(string Name, int ElementType, long[] Dims, string[] Symbols, bool UnknownRank = false)
{
    /// <summary>Whether a tensor of this shape may feed it.</summary>
    public bool Fits(long[] shape) => UnknownRank || shape.Length == Dims.Length && shape.Zip(Dims).All(p => p.Second < 0 || p.First == p.Second);

    /// <summary>"[1,?,224]", or "any shape".</summary>
    public string ShapeText => UnknownRank ? "no declared shape" : $"[{string.Join(",", Dims.Select(d => d < 0 ? "?" : d.ToString()))}]";
}

/// <summary>
/// One ONNX Runtime CPU session over a model, created once and reused for every run. Graph optimisations are
/// disabled unless asked otherwise: at any other level ORT folds BatchNormalization itself, and a check against
/// such a baseline would compare NormFold with ORT's fold rather than with the model.
/// </summary>
internal sealed class OrtRunner : IDisposable
{
    readonly InferenceSession _session;
    /// <summary>How messages name the model: "the original (a.onnx)", or its path.</summary>
    public string Label { get; }
    public IReadOnlyList<TensorSignature> Inputs { get; }
    public IReadOnlyList<TensorSignature> Outputs { get; }

    /// <param name="modelPath">Loaded by path, so external data resolves beside the file.</param>
    public OrtRunner(string modelPath, OrtLevel level = OrtLevel.Disable, int intraOpThreads = 0, string? label = null)
        : this(o => new InferenceSession(modelPath, o), label ?? modelPath, level, intraOpThreads) { }

    public OrtRunner(byte[] model, OrtLevel level = OrtLevel.Disable, int intraOpThreads = 0, string? label = null)
        : this(o => new InferenceSession(model, o), label ?? "<in-memory model>", level, intraOpThreads) { }

    /// <param name="sharedArena">true: allocate from the process's shared CPU arena (<see
    /// cref="OrtEnvironment.EnsureSharedArena"/>), not an arena of its own (many sessions run one after another, each
    /// of which would otherwise keep its own high-water mark).</param>
    internal OrtRunner(string? modelPath, byte[]? model, OrtLevel level, string label, bool sharedArena)
        : this(o => modelPath != null ? new InferenceSession(modelPath, o) : new InferenceSession(model!, o), label, level, 0, sharedArena) { }

    OrtRunner(Func<SessionOptions, InferenceSession> create, string label, OrtLevel level, int intraOpThreads, bool sharedArena = false)
    {
        Label = label;
        _ = OrtEnvironment.Instance; // silent logger, before any session exists
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = level switch
            {
                OrtLevel.Disable => GraphOptimizationLevel.ORT_DISABLE_ALL,
                OrtLevel.Basic => GraphOptimizationLevel.ORT_ENABLE_BASIC,
                OrtLevel.Extended => GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                _ => GraphOptimizationLevel.ORT_ENABLE_ALL,
            },
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
        };
        if (intraOpThreads > 0) options.IntraOpNumThreads = intraOpThreads;
        if (sharedArena)
        {
            OrtEnvironment.EnsureSharedArena();
            options.AddSessionConfigEntry("session.use_env_allocators", "1");
        }
        // Idle intra-op threads sleep rather than spin: spinning burns a core after every run (5x the CPU of a check
        // that runs many small segments), and CI runners share their cores.
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        try { _session = create(options); }
        catch (OnnxRuntimeException e) { throw new InvalidModelException($"{label}: ONNX Runtime cannot load it: {OrtEnvironment.OneLine(e.Message)}", e); }
        Inputs = Signatures(_session.InputMetadata);
        Outputs = Signatures(_session.OutputMetadata);
    }

    static List<TensorSignature> Signatures(IReadOnlyDictionary<string, NodeMetadata> metadata) =>
        metadata.Select(kv => kv.Value.IsTensor
            ? new TensorSignature(kv.Key, (int)kv.Value.ElementDataType, kv.Value.Dimensions.Select(d => (long)d).ToArray(),
                kv.Value.SymbolicDimensions ?? new string[kv.Value.Dimensions.Length])
            : new TensorSignature(kv.Key, 0, [], [])).ToList();

    /// <summary>Runs the model; returns the requested outputs (all by default) in the order asked, copied out of ORT.</summary>
    public List<NamedTensor> Run(IReadOnlyList<NamedTensor> inputs, IReadOnlyList<string>? outputNames = null)
    {
        using var outputs = RunInPlace(inputs, outputNames);
        return outputs.Select(t => t with { Data = t.Data.ToArray() }).ToList();
    }

    /// <summary>
    /// Runs the model; the outputs' bytes stay in ORT's buffers (no copy: on this kind of machine a copy into fresh
    /// memory costs as much as the comparison). They are valid until the result is disposed.
    /// </summary>
    /// <exception cref="InvalidModelException">ORT failed: the message names <see cref="Label"/> and holds ORT's whole
    /// message on one line (the exception's inner one is ORT's).</exception>
    public OrtOutputs RunInPlace(IReadOnlyList<NamedTensor> inputs, IReadOnlyList<string>? outputNames = null)
    {
        outputNames ??= Outputs.Select(o => o.Name).ToList();
        if (outputNames.Count == 0) return new OrtOutputs(null); // ORT refuses a run that asks for nothing
        var values = new List<OrtValue>(inputs.Count);
        try
        {
            foreach (var input in inputs) values.Add(Value(input));
            return RunValues(inputs.Select(i => i.Name).ToList(), values, outputNames);
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }

    /// <summary>An ORT value holding a copy of <paramref name="input"/> (the caller disposes it).</summary>
    internal static OrtValue Value(NamedTensor input)
    {
        _ = OrtEnvironment.Instance; // before ORT's first call (telemetry off, silent logger)
        if (input.Strings is { } strings)
        {
            var text = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, input.Shape);
            for (int i = 0; i < strings.Length; i++) text.StringTensorSetElementAt(strings[i].AsSpan(), i);
            return text;
        }
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)input.ElementType, input.Shape);
        input.Data.Span.CopyTo(value.GetTensorMutableRawData());
        return value;
    }

    /// <summary>Runs on ORT values (not copied, still the caller's); the outputs as <see cref="RunInPlace"/>.</summary>
    internal OrtOutputs RunValues(IReadOnlyList<string> inputNames, IReadOnlyList<OrtValue> inputs, IReadOnlyList<string> outputNames)
    {
        if (outputNames.Count == 0) return new OrtOutputs(null);
        IDisposableReadOnlyCollection<OrtValue>? results = null;
        try
        {
            using var runOptions = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            results = _session.Run(runOptions, inputNames, inputs, outputNames);
            var outputs = new OrtOutputs(results);
            int k = 0;
            foreach (var r in results)
            {
                string name = outputNames[k++];
                outputs.Values[name] = r;
                if (!r.IsTensor) throw new InvalidModelException($"{Label}: output '{name}' is not a tensor; only tensors can be compared");
                var info = r.GetTensorTypeAndShape();
                outputs.Add(info.ElementDataType == TensorElementType.String
                    ? new NamedTensor(name, (int)info.ElementDataType, info.Shape, ReadOnlyMemory<byte>.Empty) { Strings = r.GetStringTensorAsArray() }
                    : new NamedTensor(name, (int)info.ElementDataType, info.Shape, outputs.View(r)));
            }
            results = null; // the outputs' now
            return outputs;
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidModelException($"{Label}: ONNX Runtime failed to run it: {OrtEnvironment.OneLine(e.Message)}", e);
        }
        finally
        {
            results?.Dispose();
        }
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>A run's outputs, their bytes in ORT's own buffers until disposed (reading them afterwards throws).</summary>
internal sealed class OrtOutputs : System.Collections.ObjectModel.Collection<NamedTensor>, IDisposable
{
    readonly IDisposableReadOnlyCollection<OrtValue>? _values;
    bool _disposed;

    internal OrtOutputs(IDisposableReadOnlyCollection<OrtValue>? values) => _values = values;

    /// <summary>The ORT value of each output, by name (to feed another session without a copy).</summary>
    internal Dictionary<string, OrtValue> Values { get; } = new(StringComparer.Ordinal);

    internal ReadOnlyMemory<byte> View(OrtValue value)
    {
        var span = value.GetTensorMutableRawData();
        if (span.IsEmpty) return ReadOnlyMemory<byte>.Empty;
        unsafe
        {
            fixed (byte* p = span) return new NativeView(this, p, span.Length).Memory; // ORT's buffer does not move
        }
    }

    readonly HashSet<OrtValue> _freed = new(ReferenceEqualityComparer.Instance);

    /// <summary>Frees one output before the others (its tensor's view must not be read afterwards).</summary>
    internal void Free(string name)
    {
        if (Values.Remove(name, out var value) && _freed.Add(value)) value.Dispose();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_values is null) return;
        foreach (var v in _values) if (!_freed.Contains(v)) v.Dispose();
    }

    sealed unsafe class NativeView(OrtOutputs owner, byte* pointer, int length) : System.Buffers.MemoryManager<byte>
    {
        public override Span<byte> GetSpan() =>
            owner._disposed ? throw new ObjectDisposedException("ORT outputs", "read after the run's outputs were disposed") : new(pointer, length);
        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) =>
            owner._disposed ? throw new ObjectDisposedException("ORT outputs") : new(pointer + elementIndex, default, this);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
