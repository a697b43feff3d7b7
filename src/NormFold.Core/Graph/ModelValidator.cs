using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Graph;

/// <summary>
/// One pass, before anything reads the graph, over what ONNX requires and NormFold relies on. A model that breaks it
/// is refused as invalid (<see cref="InvalidModelException"/> naming the file, graph, node or tensor):
/// - tensors: dims ≥ 0 whose element count fits in int64;
/// - each graph: unique input names, unique initializer names, every tensor defined once (SSA: no node output that is
///   an input, an initializer or another node's output), every name read defined here or in an enclosing graph, no
///   cycle (nodes may come in any order);
/// - default-domain nodes NormFold reads: the inputs ONNX requires present, an output, a Constant with exactly one
///   value; Conv/ConvTranspose group ≥ 1 dividing the weight's channel axis, strides/dilations/kernel_shape ≥ 1,
///   pads ≥ 0, each as long as the weight has spatial axes.
/// Valid ONNX that NormFold merely does not fold (zero channels, unknown ops) passes: rules refuse those by name.
/// Iterative throughout: no recursion whose depth grows with the graph's.
/// </summary>
internal static class ModelValidator
{
    public static void Validate(OnnxModel model)
    {
        string file = model.Describe();
        foreach (var t in model.AllTensors()) CheckDims(file, t);
        var work = new Stack<(GraphProto Graph, string Path, Scope? Outer)>();
        if (model.Proto.Graph != null) work.Push((model.Proto.Graph, "main", null));
        while (work.Count > 0)
        {
            var (g, path, outer) = work.Pop();
            var scope = CheckGraph(file, model.DefaultOpset, g, path, outer);
            foreach (var n in g.Node)
                foreach (var a in n.Attribute)
                {
                    if (a.G != null) work.Push((a.G, $"{path}/{Label(n)}:{a.Name}", scope));
                    for (int k = 0; k < a.Graphs.Count; k++) work.Push((a.Graphs[k], $"{path}/{Label(n)}:{a.Name}[{k}]", scope));
                }
        }
    }

    /// <summary>Names defined in a graph, chained to the enclosing graph's (a body may read any outer name).</summary>
    sealed class Scope(HashSet<string> names, Scope? outer, Dictionary<string, TensorProto> initializers, Dictionary<string, NodeProto> producers)
    {
        /// <summary>A weight's tensor when the nearest graph defining <paramref name="name"/> makes it an initializer or a
        /// Constant node's value (a body's Conv may read its weight from the enclosing graph); dims are all that is read.</summary>
        public TensorProto? ConstantWeight(string name)
        {
            for (var s = this; s != null; s = s.Outer)
            {
                if (s._initializers.TryGetValue(name, out var t)) return t;
                if (s._producers.TryGetValue(name, out var p))
                    return p.OpType == "Constant" && Attributes.IsDefaultDomain(p) ? Attributes.Find(p, "value")?.T : null;
                if (s.Names.Contains(name)) return null;
            }
            return null;
        }
        readonly Dictionary<string, TensorProto> _initializers = initializers;
        readonly Dictionary<string, NodeProto> _producers = producers;

        public bool Contains(string name)
        {
            for (var s = this; s != null; s = s.Outer) if (s.Names.Contains(name)) return true;
            return false;
        }
        public HashSet<string> Names { get; } = names;
        public Scope? Outer { get; } = outer;
    }

    static void CheckDims(string file, TensorProto t)
    {
        try { TensorData.ElementCount(t); }
        catch (FormatException e) { throw new InvalidModelException($"{file}: {e.Message}", e); }
    }

    static Scope CheckGraph(string file, long opset, GraphProto g, string path, Scope? outer)
    {
        string where = $"{file}: graph '{path}'";
        var defined = new HashSet<string>(g.Input.Count + g.Initializer.Count + g.Node.Count, StringComparer.Ordinal);
        var inputs = new HashSet<string>(g.Input.Count, StringComparer.Ordinal);
        foreach (var v in g.Input)
        {
            if (!inputs.Add(v.Name)) throw new InvalidModelException($"{where}: graph input '{v.Name}' is declared twice");
            defined.Add(v.Name);
        }
        var initializers = new Dictionary<string, TensorProto>(g.Initializer.Count, StringComparer.Ordinal);
        foreach (var t in g.Initializer)
            if (!initializers.TryAdd(t.Name, t)) throw new InvalidModelException($"{where}: two initializers are named '{t.Name}'");
        foreach (var s in g.SparseInitializer)
            if (s.Values is { } v && !initializers.TryAdd(v.Name, v)) throw new InvalidModelException($"{where}: two initializers are named '{v.Name}'");
        defined.UnionWith(initializers.Keys);

        var producers = new Dictionary<string, NodeProto>(g.Node.Count, StringComparer.Ordinal);
        List<string>? readFirst = null; // names a node reads before any node of this graph has produced them
        foreach (var n in g.Node)
        {
            foreach (var name in GraphIndex.ReadNames(n))
                if (!producers.ContainsKey(name)) (readFirst ??= []).Add(name);
            for (int k = 0; k < n.Output.Count; k++) // not foreach: a RepeatedField's enumerator allocates
            {
                string o = n.Output[k];
                if (o.Length == 0) continue;
                if (producers.TryGetValue(o, out var other))
                    throw new InvalidModelException($"{where}: '{o}' is produced twice, by {Attributes.Describe(other)}{(ReferenceEquals(other, n) ? "" : $" and by {Attributes.Describe(n)}")}");
                if (defined.Contains(o))
                    throw new InvalidModelException($"{where}: '{o}' is both {(inputs.Contains(o) ? "a graph input" : "an initializer")} and the output of {Attributes.Describe(n)}");
                producers[o] = n;
            }
        }
        defined.UnionWith(producers.Keys);
        var scope = new Scope(defined, outer, initializers, producers);

        foreach (var n in g.Node)
        {
            if (Attributes.IsDefaultDomain(n)) CheckNode(where, opset, n, scope);
            foreach (var name in GraphIndex.ReadNames(n))
                if (!scope.Contains(name))
                    throw new InvalidModelException($"{where}: {Attributes.Describe(n)} reads '{name}', which no input, initializer or node defines");
        }
        foreach (var o in g.Output)
            if (!scope.Contains(o.Name))
                throw new InvalidModelException($"{where}: graph output '{o.Name}' is not defined by any input, initializer or node");
        // Nodes in topological order (as exporters write them) cannot form a cycle: only a name read before its
        // producer calls for the full check.
        if (readFirst != null && readFirst.Exists(producers.ContainsKey)) CheckAcyclic(where, g, producers);
        return scope;
    }

    /// <summary>Kahn's algorithm over the graph's own edges; what is never freed lies on or behind a cycle.</summary>
    static void CheckAcyclic(string where, GraphProto g, Dictionary<string, NodeProto> producers)
    {
        var pending = new Dictionary<NodeProto, int>(g.Node.Count, ReferenceEqualityComparer.Instance);
        var readers = new Dictionary<NodeProto, List<NodeProto>>(ReferenceEqualityComparer.Instance);
        var ready = new Stack<NodeProto>();
        foreach (var n in g.Node)
        {
            int count = 0;
            foreach (var name in GraphIndex.ReadNames(n)) // a name read twice is an edge counted and freed twice
                if (producers.TryGetValue(name, out var p))
                {
                    count++;
                    if (!readers.TryGetValue(p, out var list)) readers[p] = list = [];
                    list.Add(n);
                }
            pending[n] = count;
            if (count == 0) ready.Push(n);
        }
        int done = 0;
        while (ready.Count > 0)
        {
            var n = ready.Pop();
            done++;
            if (readers.TryGetValue(n, out var list))
                foreach (var r in list)
                    if (--pending[r] == 0) ready.Push(r);
        }
        if (done == g.Node.Count) return;
        // Walk back from a blocked node through blocked producers until a node repeats: that loop is a cycle.
        var start = g.Node.First(n => pending[n] > 0);
        var order = new List<NodeProto>();
        var seenAt = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
        for (var n = start; !seenAt.ContainsKey(n);)
        {
            seenAt[n] = order.Count;
            order.Add(n);
            n = GraphIndex.ReadNames(n).Select(name => producers.GetValueOrDefault(name)).First(p => p != null && pending[p] > 0)!;
            if (seenAt.TryGetValue(n, out int at))
            {
                var cycle = order.Skip(at).Reverse().Select(Attributes.Describe).ToList();
                cycle.Add(cycle[0]);
                throw new InvalidModelException(cycle.Count == 2
                    ? $"{where}: {cycle[0]} reads its own output: the graph has a cycle"
                    : $"{where}: the graph has a cycle: {string.Join(" → ", cycle)}");
            }
        }
    }

    /// <summary>Inputs ONNX requires of the default-domain ops NormFold reads (by position).</summary>
    static readonly Dictionary<string, string[]> RequiredInputs = new(StringComparer.Ordinal)
    {
        ["BatchNormalization"] = ["X", "scale", "B", "input_mean", "input_var"],
        ["Conv"] = ["X", "W"], ["ConvTranspose"] = ["X", "W"], ["Gemm"] = ["A", "B"], ["MatMul"] = ["A", "B"],
        ["Add"] = ["A", "B"], ["Sub"] = ["A", "B"], ["Mul"] = ["A", "B"], ["Div"] = ["A", "B"], ["Pow"] = ["X", "Y"],
        ["InstanceNormalization"] = ["input", "scale", "B"], ["GroupNormalization"] = ["X", "scale", "bias"],
        ["LayerNormalization"] = ["X", "Scale"], ["Gather"] = ["data", "indices"],
        ["ReduceMean"] = ["data"], ["Sqrt"] = ["X"], ["Transpose"] = ["data"], ["Identity"] = ["input"],
        ["Cast"] = ["input"], ["Shape"] = ["data"], ["Squeeze"] = ["data"], ["Unsqueeze"] = ["data"],
        ["Flatten"] = ["input"], ["Concat"] = ["inputs"], ["Relu"] = ["X"], ["Sigmoid"] = ["X"], ["Tanh"] = ["input"],
        ["Clip"] = ["input"], ["Dropout"] = ["data"], ["Reshape"] = ["data"],
    };

    static readonly string[] ConstantValues =
        ["value", "value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings", "sparse_value"];

    static void CheckNode(string where, long opset, NodeProto n, Scope scope)
    {
        string Who() => $"{where}: {Attributes.Describe(n)}"; // built only for a message: most nodes pass
        if (n.Output.Count == 0 || n.Output[0].Length == 0)
            throw new InvalidModelException($"{Who()} has no output");
        if (RequiredInputs.TryGetValue(n.OpType, out var required))
        {
            if (n.OpType == "Reshape" && opset >= 5) required = ["data", "shape"];
            if (n.OpType == "Unsqueeze" && opset >= 13) required = ["data", "axes"];
            if (n.Input.Count < required.Length)
                throw new InvalidModelException($"{Who()} has {n.Input.Count} input(s); it needs {required.Length} ({string.Join(", ", required)})");
            for (int i = 0; i < required.Length; i++)
                if (n.Input[i].Length == 0)
                    throw new InvalidModelException($"{Who()}: its required input {i} ({required[i]}) is empty");
        }
        switch (n.OpType)
        {
            case "Constant":
                int values = n.Attribute.Count(a => ConstantValues.Contains(a.Name));
                if (values != 1)
                    throw new InvalidModelException($"{Who()} holds {values} values; a Constant holds exactly one (value, value_float, value_floats, …)");
                if (Attributes.Find(n, "value") is { } v && v.T is null)
                    throw new InvalidModelException($"{Who()}: its 'value' attribute holds no tensor");
                break;
            case "Conv" or "ConvTranspose":
                CheckConvAttributes(Who, n, scope.ConstantWeight(n.Input[1]));
                break;
        }
    }

    static readonly (string Name, long Min, int PerAxis)[] ConvLists =
        [("strides", 1L, 1), ("dilations", 1L, 1), ("kernel_shape", 1L, 1), ("pads", 0L, 2), ("output_padding", 0L, 1)];

    static void CheckConvAttributes(Func<string> who, NodeProto n, TensorProto? weight)
    {
        long group = Attributes.Int(n, "group", 1);
        if (group < 1) throw new InvalidModelException($"{who()}: group = {group}; it must be at least 1");
        int? spatial = weight is { Dims.Count: >= 3 } ? weight.Dims.Count - 2 : null;
        foreach (var (name, min, perAxis) in ConvLists)
        {
            if (name == "output_padding" && n.OpType != "ConvTranspose") continue;
            if (Attributes.Ints(n, name) is not { } values) continue;
            foreach (long v in values)
                if (v < min) throw new InvalidModelException($"{who()}: {name} [{string.Join(", ", values)}] holds {v}; each must be at least {min}");
            if (spatial is { } s && values.Count != s * perAxis)
                throw new InvalidModelException($"{who()}: {name} has {values.Count} values; its weight '{weight!.Name}' [{string.Join(", ", weight.Dims)}] has {s} spatial axes, so it needs {s * perAxis}");
        }
        if (weight is { Dims.Count: >= 1 } && weight.Dims[0] % group != 0)
            throw new InvalidModelException($"{who()}: group = {group} does not divide the {(n.OpType == "Conv" ? "output" : "input")} channels of its weight '{weight.Name}' [{string.Join(", ", weight.Dims)}]");
    }

    static string Label(NodeProto n) => n.Name.Length > 0 ? n.Name : $"<{n.OpType} → {n.Output.FirstOrDefault()}>";
}
