using NormFold.Onnx;

namespace NormFold.Graph;

/// <summary>
/// Fresh, model-wide unique names for tensors and nodes. Names are derived deterministically from a base
/// ("w" → "w_bnfold", "w_bnfold_1", …) so the same input always gives the same output.
/// </summary>
internal sealed class NameAllocator
{
    readonly HashSet<string> _values = new(StringComparer.Ordinal);
    readonly HashSet<string> _nodes = new(StringComparer.Ordinal);

    public NameAllocator(OnnxModel model)
    {
        foreach (var g in model.AllGraphs())
        {
            foreach (var v in g.Input) _values.Add(v.Name);
            foreach (var v in g.Output) _values.Add(v.Name);
            foreach (var v in g.ValueInfo) _values.Add(v.Name);
            foreach (var t in g.Initializer) _values.Add(t.Name);
            foreach (var s in g.SparseInitializer) if (s.Values != null) _values.Add(s.Values.Name);
            var nodes = g.Node; // index loops: a foreach over a RepeatedField allocates
            for (int k = 0; k < nodes.Count; k++)
            {
                var n = nodes[k];
                _nodes.Add(n.Name);
                for (int j = 0; j < n.Output.Count; j++) _values.Add(n.Output[j]);
                for (int j = 0; j < n.Input.Count; j++) _values.Add(n.Input[j]);
            }
        }
        foreach (var f in model.Proto.Functions)
            foreach (var n in f.Node) { _nodes.Add(n.Name); foreach (var o in n.Output) _values.Add(o); }
    }

    /// <summary>Per base name, the suffix to try next: n folds of one shared weight cost O(n), not O(n²).</summary>
    readonly Dictionary<string, int> _nextValue = new(StringComparer.Ordinal), _nextNode = new(StringComparer.Ordinal);

    public string FreshValue(string baseName) => Fresh(_values, _nextValue, baseName);
    public string FreshNode(string baseName) => Fresh(_nodes, _nextNode, baseName);

    static string Fresh(HashSet<string> taken, Dictionary<string, int> next, string baseName)
    {
        if (taken.Add(baseName)) return baseName;
        for (int i = next.GetValueOrDefault(baseName, 1); ; i++)
        {
            string candidate = $"{baseName}_{i}";
            if (taken.Add(candidate)) { next[baseName] = i + 1; return candidate; }
        }
    }
}
