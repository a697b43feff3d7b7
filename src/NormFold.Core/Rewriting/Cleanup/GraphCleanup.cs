using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Cleanup;

/// <summary>
/// After rewriting one graph: removes what the rewrites left unread (starting from the editor's orphans only, so
/// dead code the model already had is not our business), drops value_info of vanished tensors and value_info the graph
/// contradicts, and sorts the nodes topologically — keeping the original order wherever it is already valid.
/// </summary>
internal static class GraphCleanup
{
    /// <summary>Runs cleanup; returns orphan names this graph does not define (for the enclosing graph).</summary>
    public static HashSet<string> Run(GraphEditor editor)
    {
        var index = editor.Index;
        var graph = index.Graph;
        var removedInits = new HashSet<string>(StringComparer.Ordinal);
        var outer = new HashSet<string>(StringComparer.Ordinal);
        var work = new Stack<string>(editor.Orphans);
        while (work.Count > 0)
        {
            string name = work.Pop();
            if (index.Consumers(name).Count > 0 || index.IsGraphOutput(name)) continue;
            if (index.Initializers.ContainsKey(name))
            {
                // An initializer listed as a graph input can be fed at run time (kept), except before IR version 4,
                // where every initializer had to be listed so and none can be fed: then both go.
                if ((!index.IsGraphInput(name) || FixedInputs(index)) && removedInits.Add(name)) { index.Initializers.Remove(name); editor.VanishedValues.Add(name); }
                continue;
            }
            var producer = index.Producer(name);
            if (producer is null) { if (!index.Defines(name)) outer.Add(name); continue; }
            bool allUnused = true;
            foreach (var o in producer.Output)
                if (o.Length > 0 && (index.Consumers(o).Count > 0 || index.IsGraphOutput(o))) { allUnused = false; break; }
            if (!allUnused) continue;
            editor.RemoveNode(producer);
            foreach (var i in GraphIndex.ReadNames(producer)) work.Push(i);
        }

        if (removedInits.Count > 0)
        {
            RemoveWhere(graph.Initializer, t => removedInits.Contains(t.Name));
            RemoveWhere(graph.Input, v => removedInits.Contains(v.Name));
        }
        if (editor.VanishedValues.Count > 0)
            RemoveWhere(graph.ValueInfo, v => editor.VanishedValues.Contains(v.Name) && !index.Defines(v.Name));
        // A value_info the graph contradicts goes from a rewritten graph: ORT's shape inference merges such a lie
        // leniently in one graph and feeds it to a node in another (a rank-2 ConvTranspose input once a BN is folded).
        if (editor.Changed)
            RemoveWhere(graph.ValueInfo, v => index.DeclarationContradicted(v.Name));
        if (editor.Changed)
        {
            var kept = new List<NodeProto>(graph.Node.Count);
            foreach (var n in graph.Node) if (!editor.RemovedNodes.Contains(n)) kept.Add(n);
            var sorted = TopologicalSort.Sort(kept, index);
            if (!SameOrder(sorted, graph.Node))
            {
                graph.Node.Clear();
                graph.Node.AddRange(sorted);
            }
        }
        return outer;
    }

    static bool FixedInputs(GraphIndex index) => index.Model.Proto.IrVersion is >= 1 and < 4;

    static bool SameOrder(List<NodeProto> a, IList<NodeProto> b)
    {
        if (a.Count != b.Count) return false;
        for (int i = 0; i < a.Count; i++) if (!ReferenceEquals(a[i], b[i])) return false;
        return true;
    }

    static void RemoveWhere<T>(Google.Protobuf.Collections.RepeatedField<T> list, Func<T, bool> remove)
    {
        var keep = list.Where(x => !remove(x)).ToList();
        if (keep.Count == list.Count) return;
        list.Clear();
        list.AddRange(keep);
    }
}
