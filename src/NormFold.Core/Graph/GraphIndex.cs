using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Graph;

/// <summary>
/// Lookups over one graph, built once: producer and consumers of each tensor, graph inputs and outputs,
/// constants (initializers that are not graph inputs, and Constant-node outputs), declared types.
/// A node with subgraphs (If/Loop/Scan) counts as a consumer of every outer name its bodies read.
/// Names not defined here are looked up in the enclosing graph's index.
/// </summary>
internal sealed class GraphIndex
{
    public GraphProto Graph { get; }
    public OnnxModel Model { get; }
    public GraphIndex? Parent { get; }
    /// <summary>"main" for the model's graph, "main/If_0:then_branch" for a body.</summary>
    public string Path { get; }

    internal readonly Dictionary<string, NodeProto> Producers = new(StringComparer.Ordinal);
    internal readonly Dictionary<string, Readers> ConsumerLists = new(StringComparer.Ordinal);
    internal readonly Dictionary<string, TensorProto> Initializers = new(StringComparer.Ordinal);
    readonly HashSet<string> _inputs = new(StringComparer.Ordinal);
    readonly HashSet<string> _outputs = new(StringComparer.Ordinal);
    readonly Dictionary<string, TypeProto> _types = new(StringComparer.Ordinal);
    static readonly Readers NoConsumers = new();

    public GraphIndex(GraphProto graph, OnnxModel model, GraphIndex? parent = null, string path = "main")
    {
        Graph = graph;
        Model = model;
        Parent = parent;
        Path = path;
        foreach (var v in graph.Input) { _inputs.Add(v.Name); AddType(v); }
        foreach (var v in graph.Output) { _outputs.Add(v.Name); AddType(v); }
        foreach (var v in graph.ValueInfo) AddType(v);
        foreach (var name in _conflicting) if (!IsBinding(name)) _types.Remove(name);
        foreach (var t in graph.Initializer) Initializers[t.Name] = t;
        foreach (var n in graph.Node) AddNode(n);
    }

    /// <summary>Two declarations of one name that disagree (rank, a dim or the element type): neither is trusted,
    /// unless one is the main graph's input, which ORT enforces.</summary>
    readonly HashSet<string> _conflicting = new(StringComparer.Ordinal);

    void AddType(ValueInfoProto v)
    {
        if (v.Type is null) return;
        if (!_types.TryGetValue(v.Name, out var first)) { _types[v.Name] = v.Type; return; }
        bool sameType = first.TensorType?.ElemType == v.Type.TensorType?.ElemType;
        if (!sameType || TypeHints.Shape(first) is { } a && TypeHints.Shape(v.Type) is { } b && !TypeHints.Compatible(a, b))
            _conflicting.Add(v.Name);
        else if (first.TensorType?.Shape is null && v.Type.TensorType?.Shape != null && !IsBinding(v.Name))
            _types[v.Name] = v.Type; // the one that says more
    }

    /// <summary>The main graph's inputs: ORT checks fed tensors against their declared rank and fixed dims.</summary>
    bool IsBinding(string name) => Parent is null && _inputs.Contains(name);

    internal void AddNode(NodeProto n)
    {
        for (int k = 0; k < n.Output.Count; k++) if (n.Output[k].Length > 0) Producers[n.Output[k]] = n;
        foreach (var i in ReadNames(n)) AddConsumer(i, n);
    }

    internal void RemoveNode(NodeProto n)
    {
        foreach (var o in n.Output) if (o.Length > 0 && Producers.TryGetValue(o, out var p) && ReferenceEquals(p, n)) Producers.Remove(o);
        foreach (var i in ReadNames(n)) RemoveConsumer(i, n);
    }

    internal void AddConsumer(string name, NodeProto n)
    {
        if (!ConsumerLists.TryGetValue(name, out var list)) ConsumerLists[name] = list = new Readers();
        list.Add(n);
    }

    internal void RemoveConsumer(string name, NodeProto n)
    {
        if (ConsumerLists.TryGetValue(name, out var list)) list.Remove(n);
    }

    /// <summary>Names a node reads: its inputs, and the outer names its subgraphs capture.</summary>
    public static IEnumerable<string> ReadNames(NodeProto n)
    {
        var inputs = n.Input; // an index loop: a foreach over a RepeatedField allocates
        for (int k = 0; k < inputs.Count; k++) if (inputs[k].Length > 0) yield return inputs[k];
        if (!OnnxModel.HasSubgraphs(n)) yield break;
        foreach (var g in OnnxModel.Subgraphs(n))
            foreach (var captured in CapturedNames(g)) yield return captured;
    }

    /// <summary>Names a subgraph (and its own subgraphs) reads but does not define.</summary>
    public static HashSet<string> CapturedNames(GraphProto g)
    {
        var defined = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in g.Input) defined.Add(v.Name);
        foreach (var t in g.Initializer) defined.Add(t.Name);
        foreach (var s in g.SparseInitializer) if (s.Values != null) defined.Add(s.Values.Name);
        foreach (var n in g.Node) foreach (var o in n.Output) defined.Add(o);
        var captured = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in g.Node)
            foreach (var name in ReadNames(n))
                if (!defined.Contains(name)) captured.Add(name);
        foreach (var o in g.Output) if (!defined.Contains(o.Name)) captured.Add(o.Name);
        return captured;
    }

    public NodeProto? Producer(string name) => Producers.GetValueOrDefault(name);

    public IReadOnlyList<NodeProto> Consumers(string name) => ConsumerLists.GetValueOrDefault(name) ?? NoConsumers;

    public bool IsGraphOutput(string name) => _outputs.Contains(name);
    public bool IsGraphInput(string name) => _inputs.Contains(name);

    /// <summary>True when this graph defines the name (input, initializer or node output).</summary>
    public bool Defines(string name) => _inputs.Contains(name) || Initializers.ContainsKey(name) || Producers.ContainsKey(name);

    /// <summary>
    /// The constant value of a tensor: an initializer that is not also a graph input (those can be fed at run
    /// time; before IR version 4 they cannot), or a Constant node's value. Looks into enclosing graphs for names this graph does not define.
    /// </summary>
    public bool TryGetConstant(string name, out TensorProto tensor, out string whyNot) => Find(name, out tensor, explain: true, out whyNot);

    /// <summary>The same without saying why not (no message is built: most callers only test).</summary>
    public bool TryGetConstant(string name, out TensorProto tensor) => Find(name, out tensor, explain: false, out _);

    bool Find(string name, out TensorProto tensor, bool explain, out string whyNot)
    {
        // Transpose/Identity chains over a constant are walked down, then materialized back up: a loop, since a
        // chain may be thousands of nodes long (and, in a model that skipped validation, a cycle).
        List<(GraphIndex Scope, string Name, NodeProto Node)>? chain = null;
        HashSet<NodeProto>? seen = null;
        tensor = null!;
        for (var (scope, current) = (this, name); ;)
        {
            string? fail = null;
            TensorProto? found = null;
            // Before IR version 4 every initializer had to be listed as a graph input; it stays a constant (ONNX
            // Runtime: Graph::CanOverrideInitializer() is ir_version >= 4).
            bool fixedInitializer = Model.Proto.IrVersion is >= 1 and < 4 && scope.Initializers.ContainsKey(current);
            if (scope._inputs.Contains(current) && !fixedInitializer)
                fail = !explain ? "" : scope.Initializers.ContainsKey(current)
                    ? $"'{current}' is an initializer that is also a graph input, so it can be replaced at run time"
                    : $"'{current}' is a graph input";
            else if (scope.Initializers.TryGetValue(current, out var init)) found = init;
            else if (scope.Producers.TryGetValue(current, out var node))
            {
                if (node.OpType == "Constant" && Attributes.IsDefaultDomain(node) && ConstantValue(node) is { } value) found = value;
                else if (scope._materialized.TryGetValue(current, out var done)) found = done;
                else if (node.OpType is "Transpose" or "Identity" && Attributes.IsDefaultDomain(node) && node.Input.Count == 1
                         && (seen ??= new(ReferenceEqualityComparer.Instance)).Add(node))
                {
                    (chain ??= []).Add((scope, current, node));
                    current = node.Input[0];
                    continue;
                }
                else fail = explain ? $"'{current}' is computed by {Attributes.Describe(node)}" : "";
            }
            else if (scope.Parent != null) { scope = scope.Parent; continue; }
            else fail = explain ? $"'{current}' is not defined in the graph" : "";

            if (fail is null && chain != null)
                for (int i = chain.Count - 1; i >= 0 && fail is null; i--)
                {
                    if (!Tensors.ElementType.IsFoldable(found!.DataType)) fail = "";
                    else found = chain[i].Scope.Materialize(chain[i].Name, chain[i].Node, found);
                }
            if (fail is null) { tensor = found!; whyNot = ""; return true; }
            whyNot = !explain ? "" : chain is { Count: > 0 } ? $"'{chain[0].Name}' is computed by {Attributes.Describe(chain[0].Node)}" : fail;
            return false;
        }
    }

    readonly Dictionary<string, TensorProto> _materialized = new(StringComparer.Ordinal);

    /// <summary>Transpose/Identity of a constant, computed once (exact: elements are only moved).</summary>
    TensorProto Materialize(string name, NodeProto node, TensorProto source)
    {
        if (_materialized.TryGetValue(name, out var done)) return done;
        var values = Model.ReadDoubles(source);
        var dims = source.Dims.ToArray();
        if (node.OpType == "Transpose")
        {
            var perm = Attributes.Ints(node, "perm")?.Select(p => (int)p).ToArray()
                ?? Enumerable.Range(0, dims.Length).Reverse().ToArray();
            (values, dims) = Tensors.Transposition.Apply(values, dims, perm);
        }
        var t = Tensors.TensorData.Create(name, source.DataType, dims, values);
        _materialized[name] = t;
        return t;
    }

    /// <summary>The tensor a Constant node holds (value, value_float, value_floats), or null for other forms.</summary>
    static TensorProto? ConstantValue(NodeProto node)
    {
        foreach (var a in node.Attribute)
        {
            switch (a.Name)
            {
                case "value" when a.T != null:
                    return a.T;
                case "value_float":
                    var f = new TensorProto { Name = node.Output[0], DataType = (int)TensorProto.Types.DataType.Float };
                    f.FloatData.Add(a.F);
                    return f;
                case "value_floats":
                    var fs = new TensorProto { Name = node.Output[0], DataType = (int)TensorProto.Types.DataType.Float };
                    fs.Dims.Add(a.Floats.Count);
                    fs.FloatData.AddRange(a.Floats);
                    return fs;
            }
        }
        return null;
    }

    /// <summary>Declared type of a tensor (graph input/output or value_info), here or in an enclosing graph — unless the
    /// declaration contradicts another one or the shape propagated from inputs and constants (<see cref="TypeHints"/>).</summary>
    public TypeProto? DeclaredType(string name)
    {
        if (!Defines(name) && !_types.ContainsKey(name)) return Parent?.DeclaredType(name);
        return _types.TryGetValue(name, out var t) && (IsBinding(name) || !Hints.Contradicts(name)) ? t : null;
    }

    /// <summary>The declaration as written (conflicting duplicates dropped), for propagation to start from.</summary>
    internal TypeProto? RawDeclaredType(string name) =>
        _types.TryGetValue(name, out var t) ? t : Defines(name) ? null : Parent?.RawDeclaredType(name);

    /// <summary>A declaration of a name this graph defines that propagation should check (not a binding input).</summary>
    internal TypeProto? HintDeclaration(string name) => IsBinding(name) ? null : _types.GetValueOrDefault(name);

    TypeHints? _hints;
    TypeHints Hints => _hints ??= new TypeHints(this);

    /// <summary>A node was added or its output renamed: learn its output's shape and type from its inputs (names never
    /// change value, so nothing learned before goes stale; a full propagation would make each rewrite cost O(graph)).</summary>
    internal void NoteNewOutput(NodeProto node) => _hints?.LearnAdded(this, node);

    /// <summary>Rank from propagation, constants, or declarations that nothing contradicts (<see cref="TypeHints"/>).</summary>
    public int? Rank(string name) => Hints.Rank(this, name);

    /// <summary>Shape (-1 for unknown dims) as the graph proves it — from constants and the main graph's declared inputs
    /// only, never from value_info or other declarations, which may lie; null when that leaves the rank open.</summary>
    public long[]? ProvenShape(string name) => Hints.ProvenShapeOf(this, name);

    /// <summary>Where the proof of an unproven rank stops (<see cref="TypeHints.RankLostAt"/>).</summary>
    internal string RankLostAt(string name) => Hints.RankLostAt(this, name);

    /// <summary>The declaration of a main-graph input (binding: ORT enforces it), else null.</summary>
    internal TypeProto? BindingDeclaredType(string name) => IsBinding(name) ? _types.GetValueOrDefault(name) : null;

    /// <summary>Whether the value_info of <paramref name="name"/> says something the graph contradicts (a rank or dim
    /// other than propagated, or two declarations that disagree): such a declaration is dropped from a rewritten graph.</summary>
    internal bool DeclarationContradicted(string name) => !IsBinding(name) && (_conflicting.Contains(name) || Hints.Contradicts(name));

    /// <summary>Best known shape (-1 for unknown dims), or null when even the rank is unknown.</summary>
    public long[]? Shape(string name) => Hints.ShapeOf(this, name);

    /// <summary>Element type from propagation, constants, or declarations.</summary>
    public int? ElemType(string name) => Hints.ElemType(this, name);

    internal int? DeclaredElemType(string name)
    {
        if (RawDeclaredType(name) is { TensorType: { HasElemType: true } tt }) return tt.ElemType;
        if (TryGetConstant(name, out var t)) return t.DataType;
        return null;
    }

    /// <summary>Version of the default ONNX domain for nodes of this graph.</summary>
    public long Opset => Model.DefaultOpset;
}

/// <summary>
/// The readers of one tensor, in the order they were added (a node reading it twice is listed twice). Removal is O(1):
/// a count per reader drops and the list is compacted on the next read by position; Count needs no compaction. A plain
/// List.Remove made removing one of the k readers of a shared tensor (γ of 10,000 BNs) an O(k) search by protobuf's
/// field-by-field Equals plus an O(k) shift.
/// </summary>
internal sealed class Readers : IReadOnlyList<NodeProto>
{
    readonly List<NodeProto> _items = [];
    /// <summary>Entries per reader, built at the first removal: most names never lose a reader.</summary>
    Dictionary<NodeProto, int>? _count;
    int _removed;

    public void Add(NodeProto n)
    {
        _items.Add(n);
        if (_count != null) _count[n] = _count.GetValueOrDefault(n) + 1;
    }

    public void Remove(NodeProto n)
    {
        if (_count is null)
        {
            _count = new(ReferenceEqualityComparer.Instance);
            foreach (var item in _items) _count[item] = _count.GetValueOrDefault(item) + 1;
        }
        if (!_count.TryGetValue(n, out int c)) return;
        if (c == 1) _count.Remove(n); else _count[n] = c - 1;
        _removed++;
    }

    public int Count => _items.Count - _removed;

    public NodeProto this[int index] { get { Compact(); return _items[index]; } }

    public IEnumerator<NodeProto> GetEnumerator()
    {
        Compact();
        return _items.GetEnumerator();
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Keeps, per reader, as many entries as its count (the earliest; entries of one reader are alike).</summary>
    void Compact()
    {
        if (_removed == 0) return;
        var quota = new Dictionary<NodeProto, int>(_count!, ReferenceEqualityComparer.Instance);
        int kept = 0;
        for (int i = 0; i < _items.Count; i++) // not foreach: writing an element invalidates a List enumerator
        {
            var n = _items[i];
            if (quota.TryGetValue(n, out int q) && q > 0) { quota[n] = q - 1; _items[kept++] = n; }
        }
        _items.RemoveRange(kept, _items.Count - kept);
        _removed = 0;
    }
}
