using Microsoft.ML.OnnxRuntime;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Verification;

/// <summary>
/// One model cut into segments, one per batch of tensors to compare, defined batch by batch (so the caller can size
/// each batch from the sizes the previous ones turned out to have): segment k holds the nodes batch k needs that no
/// earlier segment holds, reads what earlier segments made (kept as ORT values, never copied) and exposes its batch,
/// the compared tensors not batched yet, and what nodes outside it read. Every node runs once per iteration, as in
/// one session, and a value is freed as soon as no later segment or batch reads it: only one batch of intermediates
/// (and the values still to be read) is alive at a time. Sessions are made on the first run (a segment's inputs are
/// declared with the types the values turned out to have) and reused; they share one memory arena (<see cref="OrtEnvironment.EnsureSharedArena"/>),
/// so what a segment frees, the next reuses.
/// </summary>
internal sealed class SegmentedModel : IDisposable
{
    sealed class Segment
    {
        public List<int> Nodes = [];
        public List<string> Inputs = [];       // graph inputs and values earlier segments made
        public List<string> Outputs = [];      // its batch's tensors, compared tensors not batched yet, what others read
        public HashSet<string> Initializers = [];
        public OrtRunner? Runner;
        public OrtOutputs? Results;
    }

    readonly OnnxModel _model;
    readonly OrtLevel _level;
    readonly string _label;
    readonly GraphProto _graph;
    readonly List<Segment> _segments = [];
    readonly Dictionary<string, int> _producer = new(StringComparer.Ordinal);   // tensor → node
    readonly Dictionary<string, List<int>> _readers = new(StringComparer.Ordinal); // tensor → nodes reading it
    readonly HashSet<string> _initializers, _graphInputs;
    readonly int[] _segmentOf;                                                  // node → segment, -1 before
    readonly HashSet<string> _unbatched;                                        // compared tensors not batched yet
    readonly Dictionary<string, int> _batchOf = new(StringComparer.Ordinal);    // compared tensor → batch
    readonly Dictionary<string, int> _madeBy = new(StringComparer.Ordinal);     // tensor → segment
    readonly List<List<string>> _batches = [];
    Dictionary<string, OrtValue> _inputs = [];

    /// <summary>Models whose main graph can be cut: no node holding a subgraph (those read outer names their inputs
    /// do not list), no sparse initializers, every graph output made by a node, and no float16 or bfloat16 tensors:
    /// ORT's CPU computes those ops in float32 and, within one session, passes float32 from node to node; a cut makes
    /// the value cross as float16, rounded, and every later tensor would differ from what one run computes.</summary>
    public static bool CanSegment(OnnxModel m)
    {
        var g = m.Proto.Graph;
        var made = g.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        return g.SparseInitializer.Count == 0 && g.Output.All(o => made.Contains(o.Name))
            && g.Node.All(n => n.Attribute.All(a => a.G == null && a.Graphs.Count == 0))
            && !HasHalfPrecision(g);
    }

    internal static bool HasHalfPrecision(GraphProto g)
    {
        static bool Half(long t) => t is (int)TensorProto.Types.DataType.Float16 or (int)TensorProto.Types.DataType.Bfloat16;
        return g.Initializer.Any(t => Half(t.DataType))
            || g.Input.Concat(g.Output).Concat(g.ValueInfo).Any(v => v.Type?.TensorType is { } t && Half(t.ElemType))
            || g.Node.Any(n => n.Attribute.Any(a => a.Name == "to" && Half(a.I) || a.T is { } t && Half(t.DataType)));
    }

    /// <param name="compared">Every tensor the batches will hold (so a segment exposes those a later batch compares).</param>
    public SegmentedModel(OnnxModel model, IEnumerable<string> compared, OrtLevel level, string label)
    {
        _model = model;
        _level = level;
        _label = label;
        model.MaterializeDeferred(_ => false);
        _graph = model.Proto.Graph;
        var g = _graph;
        for (int i = 0; i < g.Node.Count; i++)
        {
            foreach (var o in g.Node[i].Output)
                if (o.Length > 0) _producer[o] = i;
            foreach (var input in g.Node[i].Input.Where(n => n.Length > 0).Distinct())
                (_readers.TryGetValue(input, out var r) ? r : _readers[input] = []).Add(i);
        }
        _initializers = g.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        _graphInputs = g.Input.Select(v => v.Name).Where(n => !_initializers.Contains(n)).ToHashSet(StringComparer.Ordinal);
        _segmentOf = new int[g.Node.Count];
        Array.Fill(_segmentOf, -1);
        _unbatched = compared.Where(_producer.ContainsKey).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Batches defined so far.</summary>
    public int Count => _segments.Count;

    /// <summary>Defines the next batch (names this model does not make are left out: the comparison reports them
    /// missing) and its segment: every node the batch needs that no earlier segment holds.</summary>
    public void Define(IReadOnlyList<string> batch)
    {
        var g = _graph;
        int k = _segments.Count;
        var names = batch.Where(_producer.ContainsKey).ToList();
        _batches.Add(names);
        var segment = new Segment();
        _segments.Add(segment);
        foreach (var name in names) { _batchOf[name] = k; _unbatched.Remove(name); }
        var stack = new Stack<int>(names.Select(n => _producer[n])); // iteratively: depth does not matter
        while (stack.Count > 0)
        {
            int i = stack.Pop();
            if (_segmentOf[i] >= 0) continue;
            _segmentOf[i] = k;
            segment.Nodes.Add(i);
            foreach (var input in g.Node[i].Input)
                if (input.Length > 0 && _producer.TryGetValue(input, out int p) && _segmentOf[p] < 0) stack.Push(p);
        }
        segment.Nodes.Sort();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (int i in segment.Nodes)
        {
            foreach (var o in g.Node[i].Output)
                if (o.Length > 0) _madeBy[o] = k;
            foreach (var input in g.Node[i].Input)
            {
                if (input.Length == 0 || !seen.Add(input)) continue;
                if (_producer.TryGetValue(input, out int p)) { if (_segmentOf[p] != k) segment.Inputs.Add(input); }
                else if (_initializers.Contains(input)) segment.Initializers.Add(input);
                else if (_graphInputs.Contains(input)) segment.Inputs.Add(input);
                else throw new InvalidModelException($"{_label}: node '{g.Node[i].Name}' reads '{input}', which nothing defines");
            }
        }
        // Exposed: the batch, compared tensors a later batch holds, and what nodes outside the segment read (every such
        // node runs later: the ones before it are in earlier segments, whose inputs were fixed then).
        foreach (int i in segment.Nodes)
            foreach (var o in g.Node[i].Output)
                if (o.Length > 0 && (_batchOf.GetValueOrDefault(o, -1) == k || _unbatched.Contains(o)
                    || _readers.GetValueOrDefault(o)?.Any(r => _segmentOf[r] != k) == true))
                    segment.Outputs.Add(o);
    }

    /// <summary>Starts an iteration with these graph inputs (the caller's, read by every segment until the last batch).</summary>
    public void Begin(Dictionary<string, OrtValue> inputs)
    {
        End();
        _inputs = inputs;
    }

    /// <summary>Runs segment <paramref name="k"/> and returns batch k's tensors (some made by earlier segments), valid
    /// until <see cref="Release"/>(k).</summary>
    public List<NamedTensor> Run(int k)
    {
        var segment = _segments[k];
        if (segment.Outputs.Count > 0)
        {
            var values = segment.Inputs.Select(Value).ToList();
            segment.Runner ??= Session(segment, values);
            segment.Results = segment.Runner.RunValues(segment.Inputs, values, segment.Outputs);
        }
        return _batches[k].Select(name => _segments[_madeBy[name]].Results!.First(t => t.Name == name)).ToList();
    }

    /// <summary>Frees every value that no segment or batch after <paramref name="k"/> reads (a value some node of a
    /// batch not defined yet reads stays).</summary>
    public void Release(int k)
    {
        foreach (var s in _segments)
        {
            if (s.Results is not { } results) continue;
            foreach (var name in results.Values.Keys.ToList())
                if (_batchOf.GetValueOrDefault(name, -1) <= k && !_unbatched.Contains(name)
                    && (_readers.GetValueOrDefault(name) ?? []).All(r => _segmentOf[r] >= 0 && _segmentOf[r] <= k))
                    results.Free(name);
            if (results.Values.Count == 0) { results.Dispose(); s.Results = null; }
        }
    }

    OrtValue Value(string name) =>
        _inputs.TryGetValue(name, out var v) ? v
        : _segments[_madeBy[name]].Results?.Values.GetValueOrDefault(name) ?? throw new InvalidOperationException($"'{name}' was released before segment use");

    OrtRunner Session(Segment segment, List<OrtValue> values)
    {
        var source = _model.Proto;
        var g = source.Graph;
        var graph = new GraphProto { Name = g.Name };
        foreach (int i in segment.Nodes)
        {
            var node = g.Node[i].Clone();
            SharedTensors.PrepareForOrt(node, _model.DefaultOpset);
            graph.Node.Add(node);
        }
        foreach (var t in g.Initializer) if (segment.Initializers.Contains(t.Name)) graph.Initializer.Add(t);
        var declared = g.Input.ToDictionary(v => v.Name, StringComparer.Ordinal);
        for (int i = 0; i < segment.Inputs.Count; i++)
        {
            string name = segment.Inputs[i];
            if (declared.TryGetValue(name, out var v)) { graph.Input.Add(v); continue; }
            var value = values[i];
            if (!value.IsTensor) throw new InvalidModelException($"{_label}: '{name}' is not a tensor; the check cannot hand it from one part of the model to the next");
            var info = value.GetTensorTypeAndShape();
            graph.Input.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)info.ElementDataType } } });
        }
        foreach (var o in segment.Outputs) graph.Output.Add(new ValueInfoProto { Name = o });
        var model = new ModelProto
        {
            IrVersion = Math.Max(source.IrVersion, 4), // initializers need not be graph inputs
            ProducerName = source.ProducerName,
            Domain = source.Domain,
            ModelVersion = source.ModelVersion,
            Graph = graph,
        };
        model.OpsetImport.AddRange(source.OpsetImport);
        model.Functions.AddRange(source.Functions);
        return SharedTensors.Session(model, _model.SourcePath, _level, _label, sharedArena: true, _model.DisplayName);
    }

    /// <summary>Frees what the iteration left (its inputs stay the caller's).</summary>
    public void End()
    {
        foreach (var s in _segments) { s.Results?.Dispose(); s.Results = null; }
        _inputs = [];
    }

    public void Dispose()
    {
        End();
        foreach (var s in _segments) s.Runner?.Dispose();
    }
}
