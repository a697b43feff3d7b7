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
    public static HashSet<string> Tensors(OnnxModel reference, OnnxModel candidate) => Classify(reference, candidate).Same;

    /// <summary>
    /// <see cref="Tensors"/> (Same), and the tensors both models make whose difference can only be carried from
    /// tensors compared anyway (Carried): made by a node both models define alike (op, domain, opset, attributes,
    /// constants and graph inputs by content, the other inputs by name; no subgraph, no sequence) from tensors both
    /// models make. Differences start only at nodes defined differently — the rewrites — whose outputs are compared
    /// (as are graph outputs); such a node computes the same function of the same names in both, so all that differs
    /// in its output is carried from there. A rewrite's fault shows where the rewrite is.
    /// </summary>
    public static (HashSet<string> Same, HashSet<string> Carried) Classify(OnnxModel reference, OnnxModel candidate)
    {
        var (a, aDefined) = Digests(reference);
        var (b, bDefined) = Digests(candidate);
        var same = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, digest) in a)
            if (b.TryGetValue(name, out var other) && digest.AsSpan().SequenceEqual(other)) same.Add(name);
        var carried = new HashSet<string>(StringComparer.Ordinal);
        var made = candidate.Proto.Graph.Node.SelectMany(n => n.Output).Where(o => o.Length > 0).ToHashSet(StringComparer.Ordinal);
        foreach (var node in reference.Proto.Graph.Node) // topological order: inputs are classified first
        {
            if (node.OpType.Contains("Sequence") || node.OpType.StartsWith("Optional")) continue; // values not compared
            // Every input made by a node in both models (compared, carried or the same), or a constant or graph input
            // (in the definition by content).
            if (!node.Input.All(i => i.Length == 0 || made.Contains(i) || !aDefined.ContainsKey(i))) continue;
            foreach (var o in node.Output)
                if (o.Length > 0 && !same.Contains(o) && made.Contains(o) && aDefined.TryGetValue(o, out var mine)
                    && bDefined.TryGetValue(o, out var theirs) && mine.AsSpan().SequenceEqual(theirs))
                    carried.Add(o);
        }
        return (same, carried);
    }

    /// <summary>Each tensor's digest, and each node output's definition: the node itself with its node-made inputs
    /// named rather than digested.</summary>
    static (Dictionary<string, byte[]> Digests, Dictionary<string, byte[]> Definitions) Digests(OnnxModel model)
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
        var made = new HashSet<string>(StringComparer.Ordinal);
        var definitions = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var node in g.Node) // topological order (validated at load)
        {
            bool opaque = node.Attribute.Any(x => x.G != null || x.Graphs.Count > 0);
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using var d = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var x in new[] { h, d })
            {
                Add(x, opaque ? Guid.NewGuid().ToString() : "node");
                Add(x, node.Domain);
                Add(x, node.OpType);
                Add(x, node.Overload);
                Add(x, opsets.TryGetValue(node.Domain == "ai.onnx" ? "" : node.Domain, out long version) ? version.ToString() : "?");
                if (functions.TryGetValue((node.Domain, node.OpType, node.Overload), out var body)) x.AppendData(body);
                foreach (var attr in node.Attribute) x.AppendData(attr.ToByteArray());
            }
            foreach (var input in node.Input)
            {
                if (input.Length == 0) { Add(h, "(none)"); Add(d, "(none)"); continue; }
                // A name nothing defines (invalid, or defined later): unique, so never "unchanged".
                var inputDigest = digests.TryGetValue(input, out var di) ? di : Guid.NewGuid().ToByteArray();
                h.AppendData(inputDigest);
                if (made.Contains(input)) Add(d, "made: " + input); else d.AppendData(inputDigest);
            }
            byte[] nodeDigest = h.GetHashAndReset(), definition = d.GetHashAndReset();
            for (int k = 0; k < node.Output.Count; k++)
            {
                if (node.Output[k].Length == 0) continue;
                h.AppendData(nodeDigest);
                Add(h, k.ToString());
                digests[node.Output[k]] = h.GetHashAndReset();
                d.AppendData(definition);
                Add(d, k.ToString());
                definitions[node.Output[k]] = d.GetHashAndReset();
                made.Add(node.Output[k]);
            }
        }
        return (digests, definitions);
    }

    static void Add(IncrementalHash h, string s)
    {
        h.AppendData(System.Text.Encoding.UTF8.GetBytes(s));
        h.AppendData([0]);
    }
}
