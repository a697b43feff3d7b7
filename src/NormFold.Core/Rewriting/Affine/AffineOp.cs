using NormFold.Graph;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// One elementwise op of a tensor X and a constant c, read as y = a·x + b:
///   Mul(x, c), Mul(c, x): a = c;   Div(x, c): a = 1/c (in double);   Add(x, c), Add(c, x): b = c;
///   Sub(x, c): b = −c;   Sub(c, x): a = −1, b = c.   Div(c, x) is not affine in x: not an affine op.
/// c is an initializer (not a graph input), a Constant node, or Unsqueeze/Reshape/Identity of those.
/// Its broadcast must map onto X's channel axis alone (or c is a scalar): see <see cref="PerChannel"/>.
/// Before opset 7 the second operand broadcasts only with broadcast=1, aligned at `axis` when given.
/// </summary>
internal sealed record AffineOp(NodeProto Node, int DataSlot, string Kind, AffineOp.Constant C)
{
    /// <summary>A constant's stored type, dims (after Unsqueeze/Reshape) and values in double.</summary>
    internal sealed record Constant(string Name, int DataType, long[] Dims, double[] Values)
    {
        public string Shape => "[" + string.Join(",", Dims) + "]";
    }

    public static readonly IReadOnlyCollection<string> OpTypes = ["Mul", "Div", "Add", "Sub"];

    public string Data => Node.Input[DataSlot];
    public string Output => Node.Output[0];

    /// <summary>
    /// Null when <paramref name="n"/> is not an affine op at all (another op, no constant operand, both constant, c / x):
    /// no decision is owed for it. Otherwise the op, or a refusal when it is one that cannot be used.
    /// </summary>
    public static AffineOp? TryRead(GraphIndex g, NodeProto n, out Match.Refused? refusal)
    {
        refusal = null;
        if (!OpTypes.Contains(n.OpType) || !Attributes.IsDefaultDomain(n) || n.Input.Count != 2 || n.Output.Count != 1) return null;
        bool c0 = TryConstant(g, n.Input[0], out var k0), c1 = TryConstant(g, n.Input[1], out var k1);
        if (c0 == c1) return null;
        int dataSlot = c0 ? 1 : 0;
        var c = c0 ? k0 : k1;
        if (n.OpType == "Div" && dataSlot == 1) return null;
        if (g.Opset < 7 && dataSlot == 1)
        {
            refusal = Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(n)}: before opset 7 only the second operand broadcasts, and the constant is the first");
            return null;
        }
        if (!ElementType.IsFoldable(c.DataType)) return null; // integer arithmetic (shapes, indices), not a scaling of activations
        int bad = Array.FindIndex(c.Values, v => !double.IsFinite(v));
        if (bad >= 0)
        {
            refusal = Match.Refuse(SkipReason.NonFiniteParameter, $"{Attributes.Describe(n)} constant '{c.Name}'[{bad}] = {c.Values[bad]}");
            return null;
        }
        string kind = n.OpType == "Sub" && dataSlot == 1 ? "c−x" : n.OpType;
        return new AffineOp(n, dataSlot, kind, c);
    }

    /// <summary>
    /// This op as a per-channel affine map of X with <paramref name="rank"/> and channel axis <paramref name="axis"/>:
    /// every axis of c that is not 1 must be the channel axis, with <paramref name="channels"/> values (−1: not known).
    /// </summary>
    public Match.Refused? PerChannel(GraphIndex g, int rank, int axis, long channels, out ChannelAffine affine)
    {
        affine = ChannelAffine.Identity;
        var d = C.Dims;
        string where = $"{Attributes.Describe(Node)} constant '{C.Name}' has shape {C.Shape}";
        if (C.Values.Length == 0)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{where}: no elements");
        int offset = rank - d.Length;
        if (g.Opset < 7)
        {
            if (Attributes.Int(Node, "broadcast", 0) == 0 && d.Length != rank)
                return Match.Refuse(SkipReason.ShapeMismatch, $"{where} and broadcast=0 (opset {g.Opset}): the shapes must be equal");
            if (Attributes.Find(Node, "axis") is { } a) offset = (int)(a.I < 0 ? a.I + rank : a.I);
        }
        if (offset < 0 || offset + d.Length > rank)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{where}, which does not broadcast onto a rank-{rank} tensor without changing its shape");
        for (int i = 0; i < d.Length; i++)
        {
            if (d[i] == 1) continue;
            if (offset + i != axis)
                return Match.Refuse(SkipReason.ChannelAxisMismatch, $"{where}: it varies along axis {offset + i} of a rank-{rank} tensor, the channel axis is {axis}");
            if (channels >= 0 && d[i] != channels)
                return Match.Refuse(SkipReason.ShapeMismatch, $"{where}: {d[i]} values along the channel axis, which has {channels} channels");
        }
        double[] v = C.Values;
        affine = Kind switch
        {
            "Mul" => new ChannelAffine(v, [0.0]),
            "Div" => new ChannelAffine(v.Select(x => 1.0 / x).ToArray(), [0.0]),
            "Add" => new ChannelAffine([1.0], v),
            "Sub" => new ChannelAffine([1.0], v.Select(x => -x).ToArray()),
            _ => new ChannelAffine([-1.0], v), // c − x
        };
        if (affine.FirstNonFinite() is { } nonFinite)
            return Match.Refuse(SkipReason.NonFiniteParameter, $"{where}: {nonFinite} after taking the reciprocal");
        return null;
    }

    /// <summary>
    /// A constant operand: <see cref="GraphIndex.TryGetConstant(string, out TensorProto)"/>, or Unsqueeze/Reshape/Identity of one
    /// (elements unchanged, dims as the op makes them). Only floating-point types are read.
    /// </summary>
    public static bool TryConstant(GraphIndex g, string name, out Constant constant)
    {
        constant = null!;
        if (g.TryGetConstant(name, out var t))
        {
            if (!ElementType.IsFoldable(t.DataType)) { constant = new Constant(name, t.DataType, t.Dims.ToArray(), []); return true; }
            constant = new Constant(name, t.DataType, t.Dims.ToArray(), g.Model.ReadDoubles(t));
            return true;
        }
        if (g.Producer(name) is not { } p || !Attributes.IsDefaultDomain(p) || p.Input.Count == 0 || p.Output.Count != 1) return false;
        if (p.OpType is not ("Unsqueeze" or "Reshape" or "Identity") || !TryConstant(g, p.Input[0], out var source)) return false;
        long[]? dims = p.OpType switch
        {
            "Identity" => source.Dims,
            "Unsqueeze" => Unsqueezed(g, p, source.Dims),
            _ => Reshaped(g, p, source.Dims),
        };
        if (dims is null) return false; // axes or shape not constant or not valid
        constant = source with { Name = name, Dims = dims };
        return true;
    }

    static long[]? Unsqueezed(GraphIndex g, NodeProto p, long[] dims)
    {
        IReadOnlyList<long>? axes = Attributes.Ints(p, "axes");
        if (axes is null && p.Input.Count > 1 && g.TryGetConstant(p.Input[1], out var a) && a.DataType is (int)TensorProto.Types.DataType.Int64 or (int)TensorProto.Types.DataType.Int32)
            axes = TensorData.ReadInt64s(a, g.Model.RawBytes(a));
        if (axes is null) return null;
        int rank = dims.Length + axes.Count;
        var ones = new bool[rank];
        foreach (long ax in axes)
        {
            long k = ax < 0 ? ax + rank : ax;
            if (k < 0 || k >= rank || ones[k]) return null;
            ones[k] = true;
        }
        var result = new long[rank];
        for (int i = 0, j = 0; i < rank; i++) result[i] = ones[i] ? 1 : dims[j++];
        return result;
    }

    static long[]? Reshaped(GraphIndex g, NodeProto p, long[] dims)
    {
        if (p.Input.Count < 2 || !g.TryGetConstant(p.Input[1], out var s) || s.DataType != (int)TensorProto.Types.DataType.Int64) return null;
        var shape = TensorData.ReadInt64s(s, g.Model.RawBytes(s));
        bool allowZero = Attributes.Int(p, "allowzero", 0) != 0;
        long count = dims.Aggregate(1L, (x, y) => x * y), known = 1;
        int infer = -1;
        var result = new long[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            long v = shape[i];
            if (v == 0 && !allowZero) { if (i >= dims.Length) return null; v = dims[i]; }
            if (v == -1) { if (infer >= 0) return null; infer = i; continue; }
            if (v < 0) return null;
            result[i] = v;
            known *= v;
        }
        if (infer >= 0) { if (known == 0 || count % known != 0) return null; result[infer] = count / known; }
        else if (known != count) return null;
        return result;
    }
}
