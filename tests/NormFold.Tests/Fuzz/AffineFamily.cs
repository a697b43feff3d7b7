using NormFold.Onnx.Proto;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Fuzz.ProtoEdit;

namespace NormFold.Tests.Fuzz;

public static partial class Families
{
    /// <summary>
    /// Hostile-but-valid per-channel affine chains (Mul/Div/Add/Sub by constants, BNs among them) next to Conv,
    /// ConvTranspose, Gemm and MatMul: backward, forward, both, alone, or spliced into a bundled model. Constants of every
    /// broadcast shape (right axis, wrong axis, rank above the tensor's), as initializers, Constant nodes or through
    /// Unsqueeze/Reshape/Identity/Transpose, with zeros, tiny, huge, NaN and ±Inf values, shared, on the left operand; every
    /// float type and integer chains; opset &lt; 7 broadcast/axis; IR &lt; 4 initializers as inputs; overridable ones fed.
    /// </summary>
    static void Affine(FuzzCase c, Random r)
    {
        var a = new AffineCase(c, r);
        if (r.Next(6) == 0 && a.OnReal()) { }
        else if (r.Next(20) == 0) a.Integer();
        else a.Synthetic();
        c.Mutation = string.Join(",", a.Tags);
    }

    sealed class AffineCase(FuzzCase c, Random r)
    {
        public readonly List<string> Tags = [];
        GraphBuilder _g = null!;
        GraphProto G => _g.Graph;
        int _type = F32;
        long _opset = 15;
        int _n;
        readonly List<(string Name, long[] Dims)> _consts = [];
        readonly List<string> _intermediates = [];

        string Fresh(string prefix) => $"{prefix}{_n++}";
        T Any<T>(params T[] items) => items[r.Next(items.Length)];

        // ---- whole cases ------------------------------------------------------------------------------------------

        public void Synthetic()
        {
            _opset = r.Next(12) == 0 ? 6 : Any(7L, 9, 11, 13, 13, 15, 17, 21);
            _type = r.Next(10) switch { < 6 => F32, 6 => F64, 7 or 8 => F16, _ => BF16 };
            _g = new GraphBuilder(_opset, r.Next());
            c.Model = _g.Proto;
            c.Base = $"synthetic-op{_opset}-{ElementType.Name(_type)}";
            string mode = Any("backward", "backward", "forward", "forward", "sandwich", "alone");
            Tags.Add(mode);
            string y;
            long[] shape;
            if (mode is "backward" or "sandwich")
                (y, shape) = Producer(Any("Conv", "Conv", "ConvTranspose", "Gemm", "MatMul", "MatMul"));
            else
            {
                shape = ActivationShape();
                y = _g.Input("x", _type, Declared(shape));
                switch (r.Next(4))
                {
                    case 0: break; // the chain reads the graph input
                    case 1 when shape.Length >= 2 && _opset >= 13:
                        // X [N, 1, C, …] → Squeeze(axis 1): X's rank is known from the Squeeze alone.
                        G.Input.Clear();
                        _g.Input("x", _type, Declared([shape[0], 1, .. shape[1..]]));
                        y = Node("Squeeze", ["x", _g.Int64s(Fresh("sq_axes"), 1)]);
                        Tags.Add("squeeze");
                        break;
                    default: y = Node("Relu", [y]); break;
                }
            }
            int count = 1 + r.Next(4);
            (y, var chained) = Chain(y, shape, count);
            if (mode is "forward" or "sandwich" && chained is { Length: > 0 } s)
                (y, chained) = Consumer(Any("Conv", "Conv", "Gemm", "MatMul", "MatMul", "ConvTranspose"), y, s);
            if (r.Next(3) == 0) y = Node("Relu", [y]);
            _g.Output(y, _type, null);
            Hostile();
        }

        /// <summary>An int64/int32 MatMul with Mul/Add by integer constants, or a float chain with an integer constant.</summary>
        public void Integer()
        {
            _opset = Any(13L, 15, 17);
            _g = new GraphBuilder(_opset, r.Next());
            c.Model = _g.Proto;
            int it = Any(7, 6);
            c.Base = "synthetic-int" + (it == 7 ? 64 : 32);
            Tags.Add("int");
            long k = 2 + r.Next(3), n = 1 + r.Next(4);
            _g.Input("x", it, [2, k]);
            G.Initializer.Add(Make(Fresh("B"), it, [k, n], ProtoEdit.Random(r, k * n, -3, 3).Select(v => Math.Round(v)).ToArray()));
            string y = Node("MatMul", ["x", G.Initializer[^1].Name]);
            int ops = 1 + r.Next(3);
            for (int i = 0; i < ops; i++)
            {
                string op = Any("Mul", "Add", "Sub", "Div");
                long[] d = Any<long[]>([n], [1, n], [], [1]);
                var t = Make(Fresh("k"), it, d, ProtoEdit.Random(r, Count(d), 1, 4).Select(v => Math.Round(v)).ToArray());
                G.Initializer.Add(t);
                y = Node(op, r.Next(4) == 0 ? [t.Name, y] : [y, t.Name]);
            }
            _g.Output(y, it, null);
        }

        /// <summary>A chain spliced after (or before) a linear op or BN of a bundled model.</summary>
        public bool OnReal()
        {
            string file = Any("resnet_tiny", "resnet_tiny_constants", "resnet_tiny_fp16", "conv1d_conv3d", "decoder_convtranspose", "mlp_bn1d");
            var b = Bases.All.Single(x => x.Name == "real:" + file);
            c.Model = b.Make(r);
            c.Base = b.Name;
            _g = new GraphBuilder(c.Model.OpsetImport.FirstOrDefault(o => o.Domain == "")?.Version ?? 13, r.Next(), c.Model.Graph);
            c.Model.Graph = G; // the builder made its own model around the same graph
            _opset = c.Model.OpsetImport.FirstOrDefault(o => o.Domain == "")?.Version ?? 13;
            var idx = new GraphIndexLite(G);
            var sites = G.Node.Where(n => n.OpType is "Conv" or "ConvTranspose" or "Gemm" or "MatMul" or "BatchNormalization").ToList();
            if (sites.Count == 0) return false;
            var node = Pick(r, sites);
            bool forward = node.OpType is "Conv" or "Gemm" or "MatMul" && r.Next(3) == 0;
            var w = node.Input.Count > 1 ? idx.Constant(node.Input[1]) : null;
            if (w == null) return false;
            _type = w.DataType;
            long groups = node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1;
            bool transB = node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I == 1;
            (int rank, long ch) = (node.OpType, forward) switch
            {
                ("Conv", false) => (w.Dims.Count, w.Dims[0]),
                ("Conv", true) => (w.Dims.Count, w.Dims[1] * groups),
                ("ConvTranspose", _) => (w.Dims.Count, w.Dims[1] * groups),
                ("Gemm", false) => (2, transB ? w.Dims[0] : w.Dims[^1]),
                ("Gemm", true) => (2, transB ? w.Dims[^1] : w.Dims[0]),
                ("MatMul", false) => (2, w.Dims[^1]),
                ("MatMul", true) => (2, w.Dims[0]),
                _ => (4, w.Dims.Count > 0 ? w.Dims[0] : 1), // BN: γ [C]; the models' BNs are on rank-4 (resnet) or rank-2/3 tensors
            };
            if (node.OpType == "BatchNormalization" && file is "mlp_bn1d") rank = 2;
            if (node.OpType == "BatchNormalization" && file is "conv1d_conv3d") return false; // rank 3 or 5: unknown here
            long[] shape = [.. Enumerable.Repeat(-1L, rank)];
            shape[rank == 1 ? 0 : (node.OpType is "MatMul" or "Gemm" ? rank - 1 : 1)] = ch;
            Tags.Add($"real-{(forward ? "before" : "after")}:{node.OpType}");
            if (forward)
            {
                string x = node.Input[0];
                var (y, _) = Chain(x, shape, 1 + r.Next(3));
                node.Input[0] = y;
            }
            else
            {
                string y = node.Output[0], fresh = Fresh(y + "_pre");
                node.Output[0] = fresh;
                var (end, _) = Chain(fresh, shape, 1 + r.Next(3));
                // The chain's end takes the node's old name: readers and graph outputs keep theirs.
                foreach (var n in G.Node) if (n.Output.Contains(end)) n.Output[n.Output.IndexOf(end)] = y;
                foreach (var n in G.Node.Where(n => n.Input.Contains(end))) n.Input[n.Input.IndexOf(end)] = y;
            }
            TopoSort();
            Hostile();
            return true;
        }

        // ---- the chain --------------------------------------------------------------------------------------------

        /// <summary>
        /// <paramref name="count"/> affine ops (and BNs) after <paramref name="x"/> of <paramref name="shape"/> (−1: not
        /// known here); returns the end and its shape (null when the broadcast is not valid).
        /// </summary>
        (string, long[]?) Chain(string x, long[]? shape, int count)
        {
            for (int i = 0; i < count; i++)
            {
                if (i > 0) _intermediates.Add(x);
                if (shape is { Length: >= 2 } s && s[1] > 0 && _opset >= 7 && r.Next(4) == 0)
                {
                    string o = Fresh("bn");
                    _g.Bn(x, s[1], o, _type, Any(1e-5f, 1e-3f, 0f), o + "_node");
                    Tags.Add("BN");
                    x = o;
                    continue;
                }
                string op = Any("Mul", "Mul", "Div", "Add", "Add", "Sub");
                bool left = r.Next(5) == 0;
                // k / x (not affine) only on a graph input in float or double: after a fold, or in 16 bits, a reciprocal
                // of values near 0 turns rounding differences into large ones (both models right, the judge cannot tell).
                if (op == "Div" && left && !(G.Input.Any(v => v.Name == x) && _type is F32 or F64)) left = false;
                var (dims, label) = ConstantDims(shape);
                string k;
                var same = _consts.Where(t => t.Dims.SequenceEqual(dims)).ToList();
                if (same.Count > 0 && r.Next(4) == 0) { k = Pick(r, same).Name; label += "=shared"; }
                else k = Constant(dims, Values(op, Count(dims), out string vlabel), ref label, vlabel);
                var attrs = new List<(string, object)>();
                if (_opset < 7)
                {
                    // Before opset 7 the second operand broadcasts with broadcast=1, aligned at `axis` or at the end.
                    if (shape == null || !dims.SequenceEqual(shape) || r.Next(4) == 0) attrs.Add(("broadcast", r.Next(8) == 0 ? 0L : 1L));
                    if (r.Next(3) != 0 && shape != null) attrs.Add(("axis", (long)Any(1, 0, shape.Length - dims.Length, -1)));
                    label += string.Concat(attrs.Select(a => $"/{a.Item1}={a.Item2}"));
                }
                x = Node(op, left ? [k, x] : [x, k], [.. attrs]);
                Tags.Add($"{(left ? "k" : "")}{op}{(left ? "" : "k")}{label}");
                if (_opset >= 7) shape = shape == null ? null : Broadcast(shape, dims);
                else if (shape != null && dims.Length > shape.Length) shape = null;
            }
            return (x, shape);
        }

        /// <summary>A constant's dims relative to the tensor it meets, and a label naming the choice.</summary>
        (long[], string) ConstantDims(long[]? shape)
        {
            shape ??= [1, 1 + r.Next(4), 3, 3];
            if (shape.Length == 0) return r.Next(2) == 0 ? ([], "scalar") : ([1], "[1]");
            int rank = shape.Length, axis = rank > 1 ? 1 : 0;
            long D(int i) => shape[i] > 0 ? shape[i] : 1;
            long ch = D(axis);
            long[] Ones(int n) => [.. Enumerable.Repeat(1L, n)];
            switch (r.Next(16))
            {
                case < 4:
                { // [C, 1, …]: the channel axis when aligned at the end
                    var d = Ones(rank - axis); d[0] = ch; return (d, $"[C{new string('1', rank - axis - 1)}]");
                }
                case < 6: { var d = Ones(rank); d[axis] = ch; return (d, "[1C..]"); }
                case 6 or 7: return ([D(rank - 1)], "[last]");
                case 8: return ([], "scalar");
                case 9: return ([1], "[1]");
                case 10: return (Ones(rank), "ones");
                case 11:
                {
                    int k = r.Next(rank); var d = Ones(rank); d[k] = D(k); return (d, $"axis{k}");
                }
                case 12: { var d = Ones(rank + 1); d[axis + 1] = ch; return (d, "rank+1"); }
                case 13: return ([.. shape.Select((_, i) => D(i))], "full");
                case 14: return ([ch], "[C]");
                default: { var d = Ones(rank - axis); d[0] = ch + 1; return (d, "[C+1]"); }
            }
        }

        double[] Values(string op, long n, out string label)
        {
            bool scale = op is "Mul" or "Div";
            var v = new double[n];
            for (int i = 0; i < n; i++)
                v[i] = scale ? (r.Next(3) == 0 ? -1 : 1) * (0.5 + 1.5 * r.NextDouble()) : 2 * r.NextDouble() - 1;
            label = "";
            switch (r.Next(12))
            {
                case 0: label = "=identity"; Array.Fill(v, scale ? 1.0 : 0.0); break;
                case 1 or 2 or 3 when n > 0:
                {
                    double bad = Any(0.0, -0.0, 1e-45, 1e-40, 1e-8, 3e38, -3e38, 65504, 1e5, double.NaN, double.PositiveInfinity, double.NegativeInfinity);
                    v[r.Next((int)n)] = bad;
                    label = $"={bad:G3}";
                    break;
                }
                case 4: label = "=neg"; for (int i = 0; i < n; i++) v[i] = -Math.Abs(v[i]); break;
                case 5 when n > 0: label = "=same"; Array.Fill(v, v[0]); break;
            }
            return v;
        }

        /// <summary>A constant of these dims: initializer, Constant node, or Unsqueeze/Reshape/Identity/Transpose of one.</summary>
        string Constant(long[] dims, double[] values, ref string label, string valueLabel)
        {
            label += valueLabel;
            int type = r.Next(40) == 0 ? Any(F32, F64, F16, 7) : _type;
            if (type != _type) label += "/type" + type;
            string name = Fresh("k");
            _consts.Add((name, dims));
            string Init(string n, long[] d) { G.Initializer.Add(Make(n, type, d, values)); return n; }
            int nonOne = dims.Count(d => d != 1);
            switch (r.Next(10))
            {
                case 5 or 6:
                {
                    label += "/Constant";
                    var n = new NodeProto { OpType = "Constant", Name = name + "_node", Output = { name } };
                    if (type == F32 && _opset >= 12 && dims.Length <= 1 && r.Next(2) == 0 && values.Length >= 1)
                    {
                        if (dims.Length == 0) n.Attribute.Add(new AttributeProto { Name = "value_float", Type = AttributeProto.Types.AttributeType.Float, F = (float)values[0] });
                        else n.Attribute.Add(new AttributeProto { Name = "value_floats", Type = AttributeProto.Types.AttributeType.Floats, Floats = { values.Select(x => (float)x) } });
                        label += "/value_float" + (dims.Length == 0 ? "" : "s");
                    }
                    else n.Attribute.Add(Attr("value", Make(name, type, dims, values)));
                    G.Node.Add(n);
                    return name;
                }
                case 7 when nonOne <= 1 && dims.Length > Math.Max(1, nonOne):
                {
                    label += "/Unsqueeze";
                    long[] squeezed = [.. dims.Where(d => d != 1)];
                    long[] axes = [.. Enumerable.Range(0, dims.Length).Where(i => dims[i] == 1 && !(squeezed.Length == 0 && i == 0)).Select(i => (long)i)];
                    if (squeezed.Length == 0) squeezed = [1];
                    if (_opset >= 11 && r.Next(3) == 0) axes = [.. axes.Select(a => a - dims.Length)]; // negative axes
                    string src = Init(name + "_src", squeezed);
                    if (_opset >= 13) Node("Unsqueeze", [src, _g.Int64s(name + "_axes", axes)], name);
                    else Node("Unsqueeze", [src], name, ("axes", axes));
                    return name;
                }
                case 8 when _opset >= 5:
                {
                    label += "/Reshape";
                    string src = Init(name + "_src", [values.Length]);
                    long[] target = [.. dims];
                    if (target.Length > 0 && r.Next(2) == 0) { target[r.Next(target.Length)] = -1; label += "-1"; }
                    Node("Reshape", [src, _g.Int64s(name + "_shape", target)], name);
                    return name;
                }
                case 9 when dims.Length == 2 || r.Next(2) == 0:
                {
                    if (dims.Length == 2 && _opset >= 1)
                    {
                        label += "/Transpose";
                        Node("Transpose", [Init(name + "_src", [dims[1], dims[0]])], name, ("perm", new long[] { 1, 0 }));
                        // Values are read in the source's order: same set of values, transposed layout.
                        return name;
                    }
                    label += "/Identity";
                    Node("Identity", [Init(name + "_src", dims)], name);
                    return name;
                }
                default: return Init(name, dims);
            }
        }

        // ---- linear ops -------------------------------------------------------------------------------------------

        long[] ActivationShape()
        {
            long n = 1 + r.Next(2), ch = 1 + r.Next(4);
            long Sp() => r.Next(3) == 0 ? ch : 2 + r.Next(4);
            return r.Next(4) switch { 0 => [n, ch], 1 => [n, ch, Sp()], _ => [n, ch, Sp(), Sp()] };
        }

        /// <summary>Declared dims: the batch sometimes symbolic.</summary>
        long[] Declared(long[] shape) => r.Next(6) == 0 && shape.Length > 1 ? [-1, .. shape[1..]] : shape;

        (string, long[]) Producer(string kind)
        {
            switch (kind)
            {
                case "Conv" or "ConvTranspose":
                {
                    long n = 1 + r.Next(2), cin = 1 + r.Next(4);
                    int spatial = r.Next(4) == 0 ? 1 : 2;
                    long[] x = [n, cin, .. Enumerable.Range(0, spatial).Select(_ => (long)(3 + r.Next(3)))];
                    _g.Input("x", _type, Declared(x));
                    return Consumer(kind, "x", x);
                }
                case "Gemm":
                {
                    long m = 1 + r.Next(3), k = 1 + r.Next(4);
                    bool transA = r.Next(4) == 0;
                    _g.Input("x", _type, Declared(transA ? [k, m] : [m, k]));
                    return Gemm("x", m, k, transA);
                }
                default:
                {
                    long k = 1 + r.Next(4);
                    long[] a = r.Next(5) switch { 0 => [k], 1 or 2 => [1 + r.Next(3), k], _ => [1 + r.Next(2), 1 + r.Next(3), k] };
                    _g.Input("x", _type, a.Length > 1 ? Declared(a) : a);
                    return Consumer("MatMul", "x", a);
                }
            }
        }

        /// <summary>A linear op reading <paramref name="x"/> of <paramref name="s"/> (its kind adapted to the rank).</summary>
        (string, long[]) Consumer(string kind, string x, long[] s)
        {
            if (kind is "Conv" or "ConvTranspose" && s.Length < 3) kind = s.Length == 2 ? "Gemm" : "MatMul";
            if (kind == "Gemm" && s.Length != 2) kind = "MatMul";
            Tags.Add(kind);
            switch (kind)
            {
                case "Gemm":
                {
                    bool transA = r.Next(4) == 0;
                    return Gemm(x, transA ? s[1] : s[0], transA ? s[0] : s[1], transA);
                }
                case "MatMul":
                {
                    long k = s[^1], n = 1 + r.Next(4);
                    long[] b = r.Next(8) switch { 0 => [k], 1 when s.Length == 3 => [s[0], k, n], _ => [k, n] };
                    string w = Weight(b);
                    if (b.Length == 1) Tags.Add("B1d");
                    if (b.Length == 3) Tags.Add("B3d");
                    long[] outShape = b.Length == 1 ? s[..^1] : s.Length == 1 ? [n] : [.. s[..^1], n];
                    if (r.Next(10) == 0 && s.Length == 2 && b.Length == 2 && s[0] == n)
                    {
                        Tags.Add("B-left"); // MatMul(W [k, n], X [n, m]): the weight on the left
                        return (Node("MatMul", [w, x]), [k, s[1]]);
                    }
                    return (Node("MatMul", [x, w]), outShape);
                }
                default:
                    return ConvLike(kind == "ConvTranspose", x, s);
            }
        }

        (string, long[]) ConvLike(bool transpose, string x, long[] s)
        {
            long cin = s[1];
            int spatial = s.Length - 2;
            var divisors = Enumerable.Range(1, (int)cin).Where(d => cin % d == 0).Select(d => (long)d).ToList();
            long groups = r.Next(3) == 0 ? Pick(r, divisors) : 1;
            long m = groups * (1 + r.Next(transpose ? 2 : 3));
            long k = s.Skip(2).All(d => d >= 3) && r.Next(2) == 0 ? 3 : 1;
            long[] w = transpose ? [cin, m / groups, .. Enumerable.Repeat(k, spatial)] : [m, cin / groups, .. Enumerable.Repeat(k, spatial)];
            var attrs = new List<(string, object)>();
            if (groups > 1 || r.Next(4) == 0) attrs.Add(("group", groups));
            long stride = r.Next(4) == 0 ? 2 : 1;
            if (stride > 1) attrs.Add(("strides", Enumerable.Repeat(stride, spatial).ToArray()));
            long[] pads = new long[2 * spatial];
            string autoPad = "NOTSET";
            switch (r.Next(6))
            {
                case 0: autoPad = transpose ? "NOTSET" : Any("VALID", "SAME_UPPER", "SAME_LOWER"); break;
                case 1: attrs.Add(("pads", pads.ToArray())); Tags.Add("pads0"); break; // explicit zeros
                case 2 or 3 when k > 1: Array.Fill(pads, k / 2); break;
                case 4 when k > 1: pads[0] = 1; break; // asymmetric
            }
            if (autoPad != "NOTSET") { attrs.Add(("auto_pad", autoPad)); Tags.Add(autoPad); }
            else if (pads.Any(p => p != 0)) { attrs.Add(("pads", pads)); Tags.Add("padded"); }
            if (r.Next(3) == 0) attrs.Add(("kernel_shape", Enumerable.Repeat(k, spatial).ToArray()));
            string wn = Weight(w);
            string[] ins = r.Next(2) == 0 ? [x, wn] : [x, wn, Weight([m])];
            var outShape = new long[s.Length];
            outShape[0] = s[0];
            outShape[1] = m;
            for (int i = 0; i < spatial; i++)
            {
                long inn = s[2 + i], p = pads[i] + pads[i + spatial];
                outShape[2 + i] = transpose ? stride * (inn - 1) + k - p
                    : autoPad is "SAME_UPPER" or "SAME_LOWER" ? (inn + stride - 1) / stride
                    : (inn + p - k) / stride + 1;
            }
            return (Node(transpose ? "ConvTranspose" : "Conv", ins, [.. attrs]), outShape);
        }

        (string, long[]) Gemm(string x, long m, long k, bool transA)
        {
            long n = 1 + r.Next(4);
            bool transB = r.Next(2) == 0;
            var attrs = new List<(string, object)>();
            if (transA) attrs.Add(("transA", 1L));
            if (transB) attrs.Add(("transB", 1L));
            float alpha = Any(1f, 1f, 0.5f, -2f, 1e-3f, 0f), beta = Any(1f, 1f, 0f, 2f, -0.5f);
            if (alpha != 1f || r.Next(4) == 0) attrs.Add(("alpha", alpha));
            if (beta != 1f) attrs.Add(("beta", beta));
            string b = Weight(transB ? [n, k] : [k, n]);
            string[] ins = [x, b];
            if (_opset < 11 || r.Next(4) != 0)
            {
                long[] cd = Any<long[]>([n], [1, n], [], [1], [m, n], [m, 1], [1, 1]);
                ins = [x, b, Weight(cd)];
                Tags.Add("C[" + string.Join("x", cd) + "]");
                if (_opset < 7 && !cd.SequenceEqual(new[] { m, n })) attrs.Add(("broadcast", 1L));
            }
            Tags.Add($"gemm(a={alpha};b={beta}{(transA ? ";tA" : "")}{(transB ? ";tB" : "")})");
            return (Node("Gemm", ins, [.. attrs]), [m, n]);
        }

        string Weight(long[] dims)
        {
            string name = Fresh("w");
            G.Initializer.Add(Make(name, _type, dims, ProtoEdit.Random(r, Count(dims))));
            return name;
        }

        // ---- hostile extras ---------------------------------------------------------------------------------------

        /// <summary>Readers and outputs in the way, shared constants, lying value_info, IR &lt; 4, overridable initializers.</summary>
        void Hostile()
        {
            if (_intermediates.Count > 0 && r.Next(8) == 0)
            {
                string t = Pick(r, _intermediates);
                if (r.Next(2) == 0) { _g.Output(t, _type, null); Tags.Add("intermediate-is-output"); }
                else { _g.Output(Node("Relu", [t]), _type, null); Tags.Add("intermediate-read-twice"); }
            }
            if (_consts.Count > 0 && r.Next(8) == 0)
            {
                // The constant read by a node outside the chain too: a fold must not change it in place.
                string k = Pick(r, _consts).Name;
                _g.Output(Node("Mul", [k, k]), _type, null);
                Tags.Add("constant-read-elsewhere");
            }
            var weights = G.Node.Where(n => n.OpType is "Conv" or "Gemm" or "MatMul" && n.Input.Count > 1 && G.Initializer.Any(t => t.Name == n.Input[1])).ToList();
            if (weights.Count > 0 && r.Next(10) == 0)
            {
                // A second reader of the linear op's weight, computing a second output from the same input.
                var n = Pick(r, weights).Clone();
                n.Name += "_twin";
                n.Output[0] = Fresh("twin");
                G.Node.Add(n);
                _g.Output(n.Output[0], _type, null);
                Tags.Add("weight-shared");
            }
            if (_intermediates.Count > 0 && r.Next(10) == 0)
            {
                string t = Pick(r, _intermediates);
                long[] lie = Any<long[]>([1, 2], [7], [1, 1, 1, 1, 1], [2, 3, 4]);
                G.ValueInfo.Add(Info(t, _type, lie));
                Tags.Add("value_info-lie");
            }
            switch (r.Next(8))
            {
                case 0:
                    // IR 3: every initializer is a graph input and still a constant (ONNX Runtime cannot override it).
                    c.Model.IrVersion = 3;
                    foreach (var t in G.Initializer) if (G.Input.All(i => i.Name != t.Name)) G.Input.Add(Info(t.Name, t.DataType, [.. t.Dims]));
                    Tags.Add("ir3");
                    c.FeedInitializers = true;
                    break;
                case 1 when G.Initializer.Count > 0:
                    // IR ≥ 4: an initializer listed as an input can be fed at run time: the oracle feeds it.
                    foreach (var t in G.Initializer.Where(_ => r.Next(3) == 0).DefaultIfEmpty(Pick(r, G.Initializer)))
                        if (G.Input.All(i => i.Name != t.Name)) G.Input.Add(Info(t.Name, t.DataType, [.. t.Dims]));
                    Tags.Add("overridable");
                    c.FeedInitializers = true;
                    break;
            }
        }

        // ---- helpers ----------------------------------------------------------------------------------------------

        string Node(string op, string[] inputs, params (string, object)[] attrs) => Node(op, inputs, Fresh(op.ToLowerInvariant()), attrs);

        string Node(string op, string[] inputs, string output, params (string, object)[] attrs)
        {
            _g.Node(op, inputs, output, output + "_node", attrs);
            return output;
        }

        static long[]? Broadcast(long[] a, long[] b)
        {
            int rank = Math.Max(a.Length, b.Length);
            var o = new long[rank];
            for (int i = 0; i < rank; i++)
            {
                long x = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1, y = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
                if (x != y && x != 1 && y != 1 && x > 0 && y > 0) return null;
                o[i] = x == 1 ? y : x;
            }
            return o;
        }

        /// <summary>Nodes in an order where every input is made before it is read (the splice added nodes at the end).</summary>
        void TopoSort()
        {
            var made = new HashSet<string>(G.Input.Select(i => i.Name).Concat(G.Initializer.Select(t => t.Name))) { "" };
            var left = G.Node.ToList();
            var sorted = new List<NodeProto>();
            while (left.Count > 0)
            {
                int i = left.FindIndex(n => n.Input.All(made.Contains));
                if (i < 0) { sorted.AddRange(left); break; } // outer-scope names in subgraphs: keep the rest as is
                sorted.Add(left[i]);
                foreach (var o in left[i].Output) made.Add(o);
                left.RemoveAt(i);
            }
            G.Node.Clear();
            G.Node.AddRange(sorted);
        }
    }

    /// <summary>Initializers and Constant-node values of one graph by name.</summary>
    sealed class GraphIndexLite(GraphProto g)
    {
        public TensorProto? Constant(string name) =>
            g.Initializer.FirstOrDefault(t => t.Name == name)
            ?? g.Node.FirstOrDefault(n => n.OpType == "Constant" && n.Output.Contains(name))?.Attribute.FirstOrDefault(a => a.Name == "value")?.T;
    }
}
