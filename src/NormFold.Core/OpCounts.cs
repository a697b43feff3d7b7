using NormFold.Onnx;

namespace NormFold;

/// <summary>How many nodes of each op type the model has, over the main graph and every subgraph.</summary>
internal static class OpCounts
{
    public static SortedDictionary<string, int> Of(OnnxModel model)
    {
        var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var g in model.AllGraphs())
            foreach (var n in g.Node)
            {
                string key = n.Domain is "" or "ai.onnx" ? n.OpType : $"{n.Domain}.{n.OpType}";
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
        return counts;
    }
}
