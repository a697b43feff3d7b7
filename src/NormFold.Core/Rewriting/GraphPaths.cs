using NormFold.Onnx.Proto;

namespace NormFold.Rewriting;

/// <summary>Names of graphs in decisions: "main", and "main/If_0:then_branch" (or "…:attr[k]") for a body.</summary>
internal static class GraphPaths
{
    /// <summary>The bodies a node holds, with their paths below <paramref name="path"/>.</summary>
    public static IEnumerable<(GraphProto Body, string Path)> Bodies(NodeProto node, string path)
    {
        foreach (var attr in node.Attribute)
        {
            if (attr.G != null) yield return (attr.G, $"{path}/{Pipeline.NodeLabel(node)}:{attr.Name}");
            for (int k = 0; k < attr.Graphs.Count; k++) yield return (attr.Graphs[k], $"{path}/{Pipeline.NodeLabel(node)}:{attr.Name}[{k}]");
        }
    }

    /// <summary>Every graph of the model by path, each with its enclosing graph's path (null for "main").</summary>
    public static Dictionary<string, (GraphProto Graph, string? Parent)> All(GraphProto main)
    {
        var all = new Dictionary<string, (GraphProto, string?)>(StringComparer.Ordinal);
        var stack = new Stack<(GraphProto, string, string?)>();
        stack.Push((main, "main", null));
        while (stack.Count > 0)
        {
            var (g, path, parent) = stack.Pop();
            all.TryAdd(path, (g, parent));
            foreach (var n in g.Node)
                foreach (var (body, bodyPath) in Bodies(n, path)) stack.Push((body, bodyPath, path));
        }
        return all;
    }
}
