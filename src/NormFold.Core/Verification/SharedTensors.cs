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
        foreach (var n in proto.Graph.Node) PrepareForOrt(n, model.DefaultOpset);
        var outputs = new HashSet<string>(proto.Graph.Output.Select(o => o.Name));
        foreach (var n in names) if (outputs.Add(n)) proto.Graph.Output.Add(new ValueInfoProto { Name = n });
        return Session(proto, model.SourcePath, level, label ?? model.SourcePath ?? "<in-memory model>", sharedArena: false, model.DisplayName);
    }

    /// <summary>
    /// A node as ORT's CPU kernels need it to mean what the model says (and its subgraphs' nodes): an empty output
    /// name is an absent output, and naming or dropping one changes nothing the model computes. Trailing empty names
    /// are dropped, except on a training-mode BatchNormalization, whose empty names get fresh unread ones instead.
    /// ORT's BN takes the training form from the number of outputs listed (empty ones included), writes outputs 1
    /// and 2 (and 3, 4 if listed) without asking whether they exist, and the process dies on an absent one — on a
    /// valid BN-9 listing ["y", "", "", "sm", "sv"], or a BN-14 with training_mode=1 listing ["y", "rm", ""]. An
    /// eval BN listing only empty optional outputs becomes ["y"]; dropping names of a training one would leave an
    /// output count its schema does not allow (1 or 5 up to BN-9, 1 or 3 from BN-14). A BN-14 with
    /// training_mode=0 that names optional outputs is left as it is: ONNX's own inference refuses it, and so does ORT.
    /// </summary>
    internal static void PrepareForOrt(NodeProto node, long opset)
    {
        if (node.OpType == "BatchNormalization" && node.Domain is "" or "ai.onnx" && TrainingBatchNorm(node, opset))
        {
            for (int k = 1; k < node.Output.Count; k++)
                if (node.Output[k].Length == 0) node.Output[k] = $"normfold.absent.{Guid.NewGuid():N}";
        }
        else
            while (node.Output.Count > 1 && node.Output[^1].Length == 0) node.Output.RemoveAt(node.Output.Count - 1);
        foreach (var a in node.Attribute)
            foreach (var g in a.Graphs.Prepend(a.G).OfType<GraphProto>())
                foreach (var n in g.Node) PrepareForOrt(n, opset);
    }

    /// <summary>BN-14 on: training_mode=1; before: any optional output named (the training form).</summary>
    static bool TrainingBatchNorm(NodeProto bn, long opset) =>
        opset >= 14 ? Graph.Attributes.Int(bn, "training_mode", 0) != 0 : bn.Output.Skip(1).Any(o => o.Length > 0);

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
