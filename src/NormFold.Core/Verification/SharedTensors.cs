using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Verification;

/// <summary>
/// Intermediate tensors both models name: after a fold these are exactly the points where the two graphs must agree
/// (the BN outputs the producers took over, and everything downstream), so comparing them finds drift that the
/// final outputs can hide (a 1% error in one channel deep in a network can shrink below any output tolerance).
/// </summary>
internal static class SharedTensors
{
    /// <summary>Node outputs of the reference's main graph that the candidate's main graph also produces,
    /// in the reference's node order, excluding graph outputs (compared anyway).</summary>
    public static List<string> Names(OnnxModel reference, OnnxModel candidate)
    {
        var candidateNames = new HashSet<string>(candidate.Proto.Graph.Node.SelectMany(n => n.Output).Where(o => o.Length > 0));
        var outputs = new HashSet<string>(reference.Proto.Graph.Output.Select(o => o.Name));
        var order = new List<string>();
        var seen = new HashSet<string>();
        foreach (var n in reference.Proto.Graph.Node)
            foreach (var o in n.Output)
                if (o.Length > 0 && candidateNames.Contains(o) && !outputs.Contains(o) && seen.Add(o)) order.Add(o);
        return order;
    }

    /// <summary>A session over the model with <paramref name="names"/> added as graph outputs. A model with external
    /// data is first written (with its own data file) to a temporary folder, since ORT resolves data beside the file.</summary>
    public static OrtRunner Runner(OnnxModel model, IReadOnlyList<string> names, OrtLevel level, string? label = null)
    {
        model.MaterializeDeferred(_ => false); // a clone would not carry them
        var proto = model.Proto.Clone();
        foreach (var n in proto.Graph.Node) TrimAbsentOutputs(n);
        var outputs = new HashSet<string>(proto.Graph.Output.Select(o => o.Name));
        foreach (var n in names) if (outputs.Add(n)) proto.Graph.Output.Add(new ValueInfoProto { Name = n });
        return Session(proto, model.SourcePath, level, label ?? model.SourcePath ?? "<in-memory model>", sharedArena: false, model.DisplayName);
    }

    /// <summary>
    /// Drops trailing empty output names of a node (and of the nodes of its subgraphs): an empty name is an absent
    /// output, so the node means the same. ORT's CPU BatchNormalization counts the outputs a node lists, empty ones
    /// included, takes more than one for training mode and writes the running mean to an output that does not exist
    /// (the process dies) — on a valid model whose BN lists ["y", "", "", "", ""].
    /// </summary>
    internal static void TrimAbsentOutputs(NodeProto node)
    {
        while (node.Output.Count > 1 && node.Output[^1].Length == 0) node.Output.RemoveAt(node.Output.Count - 1);
        foreach (var a in node.Attribute)
            foreach (var g in a.Graphs.Prepend(a.G).OfType<GraphProto>())
                foreach (var n in g.Node) TrimAbsentOutputs(n);
    }

    /// <summary>A session over <paramref name="proto"/>, whose external data (if any) lies beside
    /// <paramref name="sourcePath"/>: such a model is first written (with its own data file) to a temporary folder.</summary>
    internal static OrtRunner Session(ModelProto proto, string? sourcePath, OrtLevel level, string label, bool sharedArena, string? displayName = null)
    {
        using var exposed = new OnnxModel(proto, sourcePath) { DisplayName = displayName };
        if (!exposed.HasExternalData) return new OrtRunner(null, proto.ToByteArray(), level, label, sharedArena);
        string dir = Path.Combine(Path.GetTempPath(), $"normfold-check-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "model.onnx");
            ModelWriter.Save(exposed, path);
            return new OrtRunner(path, null, level, label, sharedArena); // ORT has read the data once the session exists
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
