using Microsoft.ML.OnnxRuntime;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Verification;

/// <summary>
/// One model cut into segments, one per batch of tensors to compare: segment k holds the nodes the batch needs that
/// no earlier segment ran, reads what earlier segments made (kept as ORT values, never copied) and exposes its batch
/// and what later segments read. Every node runs once per iteration, as in one session, but only one batch of
/// intermediates (and the values still to be read) is alive at a time — not every intermediate of the model at once.
/// Sessions are made on the first run (a segment's inputs are declared with the types the values turned out to have)
/// and reused; they use no memory arena, so what a segment frees goes back to the system.
/// </summary>
internal sealed class SegmentedModel : IDisposable
{
    sealed class Segment
    {
        public List<int> Nodes = [];
        public List<string> Inputs = [];       // graph inputs and values earlier segments made
        public List<string> Outputs = [];      // its batch's tensors and what later segments or batches read
        public HashSet<string> Initializers = [];
        public int LastUse;                    // the last batch whose segment or comparison reads its outputs
        public OrtRunner? Runner;
        public OrtOutputs? Results;
    }

    readonly OnnxModel _model;
    readonly OrtLevel _level;
    readonly string _label;
    readonly List<Segment> _segments = [];
    readonly Dictionary<string, int> _madeBy = new(StringComparer.Ordinal); // tensor → segment
    readonly List<List<string>> _batches;
    Dictionary<string, OrtValue> _inputs = [];

    /// <summary>Models whose main graph can be cut: no node holding a subgraph (those read outer names their inputs
    /// do not list), no sparse initializers, every graph output made by a node.</summary>
    public static bool CanSegment(OnnxModel m)
    {
        var g = m.Proto.Graph;
        var made = g.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        return g.SparseInitializer.Count == 0 && g.Output.All(o => made.Contains(o.Name))
            && g.Node.All(n => n.Attribute.All(a => a.G == null && a.Graphs.Count == 0));
    }

    /// <param name="batches">Tensors to compare, batch by batch; names this model does not make are left out (the
    /// comparison reports them missing).</param>
    public SegmentedModel(OnnxModel model, IReadOnlyList<IReadOnlyList<string>> batches, OrtLevel level, string label)
    {
        _model = model;
        _level = level;
        _label = label;
        model.MaterializeDeferred(_ => false);
        var g = model.Proto.Graph;
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < g.Node.Count; i++)
            foreach (var o in g.Node[i].Output)
                if (o.Length > 0) producer[o] = i;
        var initializers = g.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var graphInputs = g.Input.Select(v => v.Name).Where(n => !initializers.Contains(n)).ToHashSet(StringComparer.Ordinal);
        var segmentOf = new int[g.Node.Count];
        Array.Fill(segmentOf, -1);
        _batches = batches.Select(b => b.Where(producer.ContainsKey).ToList()).ToList();
        for (int k = 0; k < _batches.Count; k++)
        {
            var segment = new Segment();
            _segments.Add(segment);
            // Every node the batch needs that no earlier segment holds (iteratively: depth does not matter).
            var stack = new Stack<int>(_batches[k].Select(n => producer[n]));
            while (stack.Count > 0)
            {
                int i = stack.Pop();
                if (segmentOf[i] >= 0) continue;
                segmentOf[i] = k;
                segment.Nodes.Add(i);
                foreach (var input in g.Node[i].Input)
                    if (input.Length > 0 && producer.TryGetValue(input, out int p) && segmentOf[p] < 0) stack.Push(p);
            }
            segment.Nodes.Sort();
        }
        for (int k = 0; k < _segments.Count; k++)
            foreach (int i in _segments[k].Nodes)
                foreach (var o in g.Node[i].Output)
                    if (o.Length > 0) _madeBy[o] = k;
        // What each segment reads, and who reads each segment's outputs.
        var exposed = new Dictionary<string, int>(StringComparer.Ordinal); // tensor → last batch reading it
        for (int k = 0; k < _segments.Count; k++)
        {
            var segment = _segments[k];
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (int i in segment.Nodes)
                foreach (var input in g.Node[i].Input)
                {
                    if (input.Length == 0 || !seen.Add(input)) continue;
                    if (_madeBy.TryGetValue(input, out int j))
                    {
                        if (j == k) continue;
                        segment.Inputs.Add(input);
                        exposed[input] = Math.Max(exposed.GetValueOrDefault(input, -1), k);
                    }
                    else if (initializers.Contains(input)) segment.Initializers.Add(input);
                    else if (graphInputs.Contains(input)) segment.Inputs.Add(input);
                    else throw new InvalidModelException($"{label}: node '{g.Node[i].Name}' reads '{input}', which nothing defines");
                }
            foreach (var name in _batches[k]) exposed[name] = Math.Max(exposed.GetValueOrDefault(name, -1), k);
        }
        foreach (var (name, last) in exposed)
        {
            var segment = _segments[_madeBy[name]];
            segment.Outputs.Add(name);
            segment.LastUse = Math.Max(segment.LastUse, last);
        }
    }

    /// <summary>Starts an iteration with these graph inputs (copied into ORT values once, shared by every segment).</summary>
    public void Begin(IReadOnlyList<NamedTensor> inputs)
    {
        End();
        _inputs = inputs.ToDictionary(i => i.Name, OrtRunner.Value, StringComparer.Ordinal);
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

    /// <summary>Frees every segment's values that no batch after <paramref name="k"/> reads.</summary>
    public void Release(int k)
    {
        foreach (var s in _segments)
            if (s.LastUse <= k && s.Results != null) { s.Results.Dispose(); s.Results = null; }
    }

    OrtValue Value(string name) =>
        _inputs.TryGetValue(name, out var v) ? v
        : _segments[_madeBy[name]].Results?.Values.GetValueOrDefault(name) ?? throw new InvalidOperationException($"'{name}' was released before segment use");

    OrtRunner Session(Segment segment, List<OrtValue> values)
    {
        var source = _model.Proto;
        var g = source.Graph;
        var graph = new GraphProto { Name = g.Name };
        foreach (int i in segment.Nodes) graph.Node.Add(g.Node[i]);
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
        return SharedTensors.Session(model, _model.SourcePath, _level, _label, arena: false, _model.DisplayName);
    }

    void End()
    {
        foreach (var s in _segments) { s.Results?.Dispose(); s.Results = null; }
        foreach (var v in _inputs.Values) v.Dispose();
        _inputs = [];
    }

    public void Dispose()
    {
        End();
        foreach (var s in _segments) s.Runner?.Dispose();
    }
}
