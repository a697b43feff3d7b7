using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Cleanup;

/// <summary>
/// Depth-first topological sort that visits nodes in their current order and emits each after its producers:
/// an already sorted list comes back unchanged, and an appended node lands just before its first reader.
/// Iterative, so deep chains cannot overflow the stack.
/// </summary>
internal static class TopologicalSort
{
    public static List<NodeProto> Sort(List<NodeProto> nodes, GraphIndex index)
    {
        var state = new Dictionary<NodeProto, byte>(nodes.Count, ReferenceEqualityComparer.Instance); // 1 = open, 2 = done
        var live = new HashSet<NodeProto>(nodes, ReferenceEqualityComparer.Instance);
        var result = new List<NodeProto>(nodes.Count);
        var stack = new Stack<(NodeProto Node, IEnumerator<string> Inputs)>();
        foreach (var root in nodes)
        {
            if (state.ContainsKey(root)) continue;
            state[root] = 1;
            stack.Push((root, GraphIndex.ReadNames(root).GetEnumerator()));
            while (stack.Count > 0)
            {
                var (node, inputs) = stack.Peek();
                if (inputs.MoveNext())
                {
                    var p = index.Producer(inputs.Current);
                    if (p is null || !live.Contains(p) || state.ContainsKey(p)) continue; // done, or a cycle: keep going
                    state[p] = 1;
                    stack.Push((p, GraphIndex.ReadNames(p).GetEnumerator()));
                }
                else
                {
                    stack.Pop();
                    state[node] = 2;
                    result.Add(node);
                }
            }
        }
        return result;
    }
}
