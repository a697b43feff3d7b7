using NormFold.Onnx.Proto;

namespace NormFold.Graph;

/// <summary>
/// Every mutation of a graph goes through here, so the index stays true. Removed nodes are only marked;
/// <see cref="Rewriting.Cleanup.GraphCleanup"/> compacts the node and initializer lists once at the end.
/// </summary>
internal sealed class GraphEditor(GraphIndex index, NameAllocator names, bool deferWeightArithmetic = false)
{
    /// <summary>Rules may leave new weights to be computed when the model is saved (see PipelineOptions).</summary>
    public bool DeferWeightArithmetic { get; } = deferWeightArithmetic;
    public GraphIndex Index { get; } = index;
    public NameAllocator Names { get; } = names;
    /// <summary>Names whose last reader may be gone: cleanup checks these, and only these.</summary>
    public HashSet<string> Orphans { get; } = new(StringComparer.Ordinal);
    internal HashSet<NodeProto> RemovedNodes { get; } = new(ReferenceEqualityComparer.Instance);
    /// <summary>Tensor names that no longer exist (for dropping their value_info).</summary>
    internal HashSet<string> VanishedValues { get; } = new(StringComparer.Ordinal);
    /// <summary>True once any edit was made.</summary>
    public bool Changed { get; private set; }

    /// <summary>Adds a new initializer with a fresh name derived from <paramref name="baseName"/>.</summary>
    public string AddInitializer(TensorProto tensor, string baseName)
    {
        Changed = true;
        tensor.Name = Names.FreshValue(baseName);
        Index.Graph.Initializer.Add(tensor);
        Index.Initializers[tensor.Name] = tensor;
        // Before IR version 4 every initializer must also be listed as a graph input (it stays a constant).
        if (Index.Model.Proto.IrVersion is >= 1 and < 4)
        {
            var type = new TypeProto.Types.Tensor { ElemType = tensor.DataType, Shape = new TensorShapeProto() };
            foreach (long d in tensor.Dims) type.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
            Index.Graph.Input.Add(new ValueInfoProto { Name = tensor.Name, Type = new TypeProto { TensorType = type } });
        }
        Index.Model.Created.Add(tensor);
        return tensor.Name;
    }

    public void SetInput(NodeProto node, int slot, string name)
    {
        Changed = true;
        while (node.Input.Count <= slot) node.Input.Add("");
        string old = node.Input[slot];
        if (old == name) return;
        if (old.Length > 0) { Index.RemoveConsumer(old, node); Orphans.Add(old); }
        node.Input[slot] = name;
        if (name.Length > 0) Index.AddConsumer(name, node);
    }

    /// <summary>Renames a node's output. The old name disappears from the graph.</summary>
    public void SetOutput(NodeProto node, int slot, string name)
    {
        Changed = true;
        string old = node.Output[slot];
        if (Index.Producers.TryGetValue(old, out var p) && ReferenceEquals(p, node))
        {
            Index.Producers.Remove(old);
            VanishedValues.Add(old);
        }
        node.Output[slot] = name;
        Index.Producers[name] = node;
        Index.NoteNewOutput(node);
        VanishedValues.Remove(name);
    }

    public void RemoveNode(NodeProto node)
    {
        Changed = true;
        Index.RemoveNode(node);
        RemovedNodes.Add(node);
        foreach (var i in GraphIndex.ReadNames(node)) Orphans.Add(i);
        foreach (var o in node.Output)
            if (o.Length > 0 && !Index.Producers.ContainsKey(o)) VanishedValues.Add(o);
    }

    /// <summary>Appends a node; the final topological sort puts it in place.</summary>
    public void AddNode(NodeProto node, string baseName)
    {
        Changed = true;
        node.Name = Names.FreshNode(baseName);
        Index.Graph.Node.Add(node);
        Index.AddNode(node);
        Index.NoteNewOutput(node);
        foreach (var o in node.Output) VanishedValues.Remove(o);
    }
}
