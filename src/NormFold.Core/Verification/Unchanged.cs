using System.Security.Cryptography;
using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;

namespace NormFold.Verification;

/// <summary>
/// Tensors identical by construction: a tensor whose whole producing subgraph (nodes, their attributes, constants and
/// initializers, down to the graph inputs) is the same in both models has the same value in both — with graph
/// optimisations disabled ORT runs the same kernels on the same data. Comparing them proves nothing.
/// Each main-graph tensor gets a digest: SHA-256 of (op, domain, attributes, input digests, output slot); inputs by
/// name and type; initializers by type, dims and bytes. A node holding a subgraph (If, Loop, Scan) reads outer names
/// its inputs do not list: its outputs get a digest of their own, never equal.
/// </summary>
internal static class Unchanged
{
    /// <summary>Names of main-graph tensors with equal digests in both models.</summary>
    public static HashSet<string> Tensors(OnnxModel reference, OnnxModel candidate)
    {
        var a = Digests(reference);
        var b = Digests(candidate);
        var same = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, digest) in a)
            if (b.TryGetValue(name, out var other) && digest.AsSpan().SequenceEqual(other)) same.Add(name);
        return same;
    }

    static Dictionary<string, byte[]> Digests(OnnxModel model)
    {
        model.MaterializeDeferred(_ => false);
        var g = model.Proto.Graph;
        var digests = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var t in g.Initializer)
        {
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Add(h, "initializer");
            Add(h, t.DataType.ToString());
            foreach (var d in t.Dims) Add(h, d.ToString());
            var copy = t.Clone();
            copy.ClearRawData();
            copy.ExternalData.Clear();
            copy.DataLocation = TensorProto.Types.DataLocation.Default;
            copy.Name = "";
            h.AppendData(copy.ToByteArray()); // typed fields, if any
            h.AppendData(model.RawBytes(t));
            digests[t.Name] = h.GetHashAndReset();
        }
        foreach (var input in g.Input)
        {
            if (digests.ContainsKey(input.Name)) continue; // an initializer with a default: a graph input all the same
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Add(h, "input");
            Add(h, input.Name);
            h.AppendData(input.Type?.ToByteArray() ?? []);
            digests[input.Name] = h.GetHashAndReset();
        }
        var initializers = g.Initializer.Select(t => t.Name).ToHashSet();
        foreach (var input in g.Input.Where(i => initializers.Contains(i.Name)))
        {
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Add(h, "overridable input"); // its value is the caller's to choose
            Add(h, input.Name);
            h.AppendData(digests[input.Name]);
            digests[input.Name] = h.GetHashAndReset();
        }
        // A node means what its domain's opset version (and, for a local function, the function's body) says.
        var opsets = model.Proto.OpsetImport.GroupBy(o => o.Domain == "ai.onnx" ? "" : o.Domain).ToDictionary(x => x.Key, x => x.Max(o => o.Version));
        var functions = model.Proto.Functions.ToDictionary(f => (f.Domain, f.Name, f.Overload), f => f.ToByteArray());
        foreach (var node in g.Node) // topological order (validated at load)
        {
            bool opaque = node.Attribute.Any(x => x.G != null || x.Graphs.Count > 0);
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Add(h, opaque ? Guid.NewGuid().ToString() : "node");
            Add(h, node.Domain);
            Add(h, node.OpType);
            Add(h, node.Overload);
            Add(h, opsets.TryGetValue(node.Domain == "ai.onnx" ? "" : node.Domain, out long version) ? version.ToString() : "?");
            if (functions.TryGetValue((node.Domain, node.OpType, node.Overload), out var body)) h.AppendData(body);
            foreach (var attr in node.Attribute) h.AppendData(attr.ToByteArray());
            foreach (var input in node.Input)
            {
                if (input.Length == 0) { Add(h, "(none)"); continue; }
                // A name nothing defines (invalid, or defined later): unique, so never "unchanged".
                h.AppendData(digests.TryGetValue(input, out var d) ? d : Guid.NewGuid().ToByteArray());
            }
            byte[] nodeDigest = h.GetHashAndReset();
            for (int k = 0; k < node.Output.Count; k++)
            {
                if (node.Output[k].Length == 0) continue;
                h.AppendData(nodeDigest);
                Add(h, k.ToString());
                digests[node.Output[k]] = h.GetHashAndReset();
            }
        }
        return digests;
    }

    static void Add(IncrementalHash h, string s)
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes(s));
        h.AppendData([0]);
    }
}
