using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NormFold.Onnx;

namespace NormFold.Verification;

public enum OrtLevel { Disable, Basic, Extended, All }

/// <summary>Declared input or output of a session: element type and dims (-1 where dynamic, with its symbol).</summary>
public sealed record TensorSignature(string Name, int ElementType, long[] Dims, string[] Symbols);

/// <summary>
/// One ONNX Runtime CPU session over a model, created once and reused for every run. Graph optimisations are
/// disabled unless asked otherwise: at any other level ORT folds BatchNormalization itself, and a check against
/// such a baseline would compare NormFold with ORT's fold rather than with the model.
/// </summary>
public sealed class OrtRunner : IDisposable
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

    OrtRunner(Func<SessionOptions, InferenceSession> create, string label, OrtLevel level, int intraOpThreads)
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
        IDisposableReadOnlyCollection<OrtValue>? results = null;
        try
        {
            foreach (var input in inputs)
            {
                if (input.Strings is { } strings)
                {
                    var text = OrtValue.CreateTensorWithEmptyStrings(OrtAllocator.DefaultInstance, input.Shape);
                    values.Add(text);
                    for (int i = 0; i < strings.Length; i++) text.StringTensorSetElementAt(strings[i].AsSpan(), i);
                    continue;
                }
                var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, (TensorElementType)input.ElementType, input.Shape);
                values.Add(value);
                input.Data.Span.CopyTo(value.GetTensorMutableRawData());
            }
            using var runOptions = new RunOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
            results = _session.Run(runOptions, inputs.Select(i => i.Name).ToList(), values, outputNames);
            var outputs = new OrtOutputs(results);
            int k = 0;
            foreach (var r in results)
            {
                string name = outputNames[k++];
                if (!r.IsTensor) throw new InvalidModelException($"output '{name}' is not a tensor; only tensors can be compared");
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
            foreach (var v in values) v.Dispose();
        }
    }

    public void Dispose() => _session.Dispose();
}

/// <summary>A run's outputs, their bytes in ORT's own buffers until disposed (reading them afterwards throws).</summary>
public sealed class OrtOutputs : System.Collections.ObjectModel.Collection<NamedTensor>, IDisposable
{
    readonly IDisposableReadOnlyCollection<OrtValue>? _values;
    bool _disposed;

    internal OrtOutputs(IDisposableReadOnlyCollection<OrtValue>? values) => _values = values;

    internal ReadOnlyMemory<byte> View(OrtValue value)
    {
        var span = value.GetTensorMutableRawData();
        if (span.IsEmpty) return ReadOnlyMemory<byte>.Empty;
        unsafe
        {
            fixed (byte* p = span) return new NativeView(this, p, span.Length).Memory; // ORT's buffer does not move
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _values?.Dispose();
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
