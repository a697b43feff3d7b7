using NormFold.Graph;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Rewriting.Normalization;

/// <summary>
/// Raising a model's default-domain opset from F to T. A node of op X keeps its meaning only if every version at which
/// X's definition changed in (F, T] (<see cref="OnnxOpVersions"/>, ONNX's since_versions) has an exemption below whose
/// check passes for this node, or an upgrade below rewrites it as ONNX's version converter does (attributes that became
/// inputs → constant inputs). No exemption, a failed check, an op NormFold does not know, an op that does not exist
/// at F, or one deprecated by T: the node blocks the raise. Every If/Loop/Scan body counts; nodes of other domains
/// (com.microsoft, …) do not depend on the default-domain opset.
/// </summary>
internal static class OpsetUpgrade
{
    /// <summary>The newest default-domain opset the table covers.</summary>
    public const long HighestKnown = OnnxOpVersions.Highest;

    /// <summary>
    /// Why a change cannot alter a node: it only added element types (<paramref name="NewTypes"/>, which the node must
    /// not use), attributes or inputs whose absence keeps the old meaning (<paramref name="NewAttributes"/>, inputs
    /// from <paramref name="FirstNewInput"/> on, which the node must not have), and <paramref name="Check"/> (null:
    /// keeps its meaning; else what changes for this node).
    /// </summary>
    sealed record Exemption(string Why, int[]? NewTypes = null, string[]? NewAttributes = null,
        int FirstNewInput = int.MaxValue, Func<NodeProto, GraphIndex, string?>? Check = null);

    const int Bool = 9, F16 = 10, Bf16 = 16, Str = 8;
    static readonly int[] Bf16Only = [Bf16], F8 = [17, 18, 19, 20], Int4 = [21, 22], F4 = [23],
        Ints = [2, 3, 4, 5, 6, 7, 12, 13], SmallInts = [2, 3, 4, 5], SignedInts = [3, 5, 6, 7], Int8s = [2, 3];

    static Exemption Types(params int[] t) => new("only added element types", NewTypes: t);
    static Exemption Adds(string what, string[] attrs, int firstInput = int.MaxValue, int[]? types = null) =>
        new($"only added {what}, whose absence keeps the old meaning", types, attrs, firstInput);
    static readonly Exemption Wider = new("only accepts more values (negative axes or indices, broadcasting, new modes); every value valid before means the same");
    static readonly Exemption Clarified = new("only reworded defaults an old node already meant; ONNX's version converter upgrades it unchanged");

    /// <summary>An attribute became an input: without it both mean the same; with it <see cref="Upgrades"/> rewrites the
    /// node, which must still pass the other conditions.</summary>
    static Exemption AxesBecameInput(string attr, int[]? types = null, string[]? attrs = null, int firstInput = int.MaxValue) =>
        new($"took {attr} as an input instead of an attribute; without the attribute both mean the same", types, attrs, firstInput);

    /// <summary>Softmax/LogSoftmax/Hardmax-13: one axis (default −1) instead of the 2-D coercion at axis (default 1);
    /// the same when both resolve to the last axis.</summary>
    static readonly Exemption LastAxis = new("normalizes along one axis instead of all axes from it on; the same when that is the last axis",
        Bf16Only, Check: (n, g) =>
        {
            if (n.Input.Count == 0 || TrustedRank(g, n.Input[0]) is not { } rank)
                return "changes the axis semantics and the input's rank is not known for certain";
            long Axis(long a) => a < 0 ? a + rank : a;
            long before = Axis(Attributes.Int(n, "axis", 1)), after = Axis(Attributes.Int(n, "axis", -1));
            return before == rank - 1 && after == rank - 1 ? null
                : $"changes the axis semantics: axis {after} alone instead of the flattened axes {before}..{rank - 1}";
        });

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<GraphIndex, GraphIndex> Undeclared = new();

    /// <summary>A rank the declarations and forward propagation from the graph's inputs and constants alone agree on:
    /// a value_info (or output) declaring a wrong rank must not make a node look unchanged.</summary>
    static int? TrustedRank(GraphIndex g, string name) =>
        g.Rank(name) is { } declared && WithoutDeclarations(g).Rank(name) == declared ? declared : null;

    static GraphIndex WithoutDeclarations(GraphIndex g) => Undeclared.GetValue(g, index =>
    {
        var copy = new GraphProto { Name = index.Graph.Name };
        copy.Input.AddRange(index.Graph.Input);
        copy.Initializer.AddRange(index.Graph.Initializer);
        copy.Node.AddRange(index.Graph.Node);
        return new GraphIndex(copy, index.Model, index.Parent is { } p ? WithoutDeclarations(p) : null, index.Path);
    });

    static readonly string[] ReduceButSum = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
        "ReduceMin", "ReduceProd", "ReduceSumSquare"];

    /// <summary>(op, version) → why the change at that version cannot alter a node passing the checks.</summary>
    static readonly Dictionary<(string Op, int Version), Exemption> Exemptions = BuildExemptions();

    static Dictionary<(string, int), Exemption> BuildExemptions()
    {
        var e = new Dictionary<(string, int), Exemption>();
        void At(int v, Exemption x, params string[] ops) { foreach (var op in ops) e.Add((op, v), x); }

        At(8, Wider, "Max", "Min", "Mean", "Sum");
        At(8, Adds("storage_order and the Indices output", ["storage_order"]), "MaxPool");
        At(9, Types(Ints), "MatMul", "Gemm", "PRelu", "Greater", "Less");
        At(9, Types(Str), "Cast");
        At(9, Types([.. Ints, Bool, Str]), "Flatten", "Constant");
        At(9, new("dropped spatial; the same when it was 1 (its default)", Check: (n, _) =>
            Attributes.Int(n, "spatial", 1) != 1 ? "dropped spatial, which is not 1 here" : null), "BatchNormalization");
        At(10, Adds("ceil_mode", ["ceil_mode"]), "AveragePool");
        At(10, Adds("ceil_mode and dilations", ["ceil_mode", "dilations"]), "MaxPool");
        At(10, new("made the mask output boolean; the same when the mask is not read", Check: (n, _) =>
            n.Output.Count > 1 && n.Output[1].Length > 0 ? "changed the mask output's type, which this node produces" : null), "Dropout");
        At(11, Wider, ["ArgMax", "ArgMin", "Compress", "Concat", "Flatten", "Gather", "Hardmax", "LogSoftmax", "Softmax", "Slice",
            "Split", "Squeeze", "Unsqueeze", "ReduceSum", "If", "Loop", "Scan", "Gemm", .. ReduceButSum]);
        At(11, Clarified, "Conv", "AveragePool", "MaxPool");
        At(11, new("reworded the output size with dilations and swapped how auto_pad/output_shape split the padding; the same with explicit pads and no dilation",
            Check: (n, _) => Attributes.Find(n, "auto_pad") is { } a && a.S.ToStringUtf8() is not ("NOTSET" or "" or "VALID")
                    ? $"changed how auto_pad {a.S.ToStringUtf8()} splits the padding"
                : Attributes.Find(n, "output_shape") != null ? "changed how output_shape splits the padding"
                : Attributes.Find(n, "dilations") is { } d && d.Ints.Any(x => x != 1) ? "changed how dilations enter the output size"
                : null), "ConvTranspose");
        At(11, Types([1, 2, 3, 4, 5, F16, 11, 12, 13]), "Equal");
        At(11, Adds("sparse_value", ["sparse_value"]), "Constant");
        At(11, Adds("mode (default DCR)", ["mode"]), "DepthToSpace");
        At(11, Adds("largest and sorted (defaults: the old behaviour)", ["largest", "sorted"]), "TopK");
        At(12, Adds("select_last_index", ["select_last_index"]), "ArgMax", "ArgMin");
        At(12, Adds("batch_dims", ["batch_dims"]), "GatherND");
        At(12, Adds("value_float(s), value_int(s), value_string(s)", ["value_float", "value_floats", "value_int", "value_ints", "value_string", "value_strings"]), "Constant");
        At(12, Types(Ints), "Clip", "Max", "Min", "Pow");
        At(12, Types(Int8s), "MaxPool", "ReduceMax", "ReduceMin");
        At(12, AxesBecameInput("ratio", attrs: ["seed"], firstInput: 1), "Dropout");
        At(13, Types(Bf16Only), ["Abs", "Add", "ArgMax", "ArgMin", "Cast", "Ceil", "Clip", "Concat", "Constant", "DepthToSpace", "Div",
            "Dropout", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm", "Greater",
            "Identity", "If", "IsNaN", "Less", "Log", "Loop", "LRN", "MatMul", "Max", "Mean", "MeanVarianceNormalization", "Min", "Mod",
            "Mul", "Neg", "NonZero", "Pad", "Pow", "Reciprocal", "Relu", "Reshape", "ScatterElements", "ScatterND", "Shape", "Sigmoid",
            "Sign", "Size", "Slice", "SpaceToDepth", "Sqrt", "Sub", "Sum", "Tanh", "Tile", "Transpose", .. ReduceButSum]);
        At(13, AxesBecameInput("axes", Bf16Only, ["noop_with_empty_axes"], 1), "ReduceSum");
        At(13, AxesBecameInput("axes", Bf16Only, firstInput: 1), "Squeeze", "Unsqueeze");
        At(13, AxesBecameInput("split", Bf16Only, firstInput: 1), "Split");
        At(13, LastAxis, "Softmax", "LogSoftmax", "Hardmax");
        At(13, new("dropped the coordinate mode tf_half_pixel_for_nn and made roi and scales optional", Bf16Only, Check: (n, _) =>
            Attributes.Find(n, "coordinate_transformation_mode")?.S.ToStringUtf8() == "tf_half_pixel_for_nn"
                ? "dropped the coordinate_transformation_mode tf_half_pixel_for_nn, which this node uses" : null), "Resize");
        At(14, Types(SmallInts), "Add", "Sub", "Mul", "Div");
        At(14, Types(SignedInts), "Relu");
        At(14, Types(F16, Bf16), "CumSum");
        At(14, Types(), "Identity");
        At(14, Adds("allowzero", ["allowzero"]), "Reshape");
        At(14, Adds("layout", ["layout"]), "GRU", "LSTM", "RNN");
        At(14, new("added training_mode and changed the training outputs; the same for one output (inference)",
            NewAttributes: ["training_mode"], Check: (n, _) => n.Output.Skip(1).Any(o => o.Length > 0)
                ? "changed the training-mode outputs, which this node produces" : null), "BatchNormalization");
        At(15, Types(), "BatchNormalization");
        At(15, Types(Bf16), "Pow");
        At(15, Adds("start and end", ["start", "end"]), "Shape");
        At(16, Types(Bf16), "Where", "LessOrEqual", "GreaterOrEqual", "LeakyRelu", "PRelu");
        At(16, Types(), "Identity", "If", "Loop", "Scan");
        At(16, Adds("reduction (default none)", ["reduction"]), "ScatterND", "ScatterElements");
        At(18, Wider, "ScatterND", "ScatterElements", "OptionalGetElement", "OptionalHasElement");
        At(18, Adds("the axes input", [], 3), "Pad");
        At(18, Adds("ceil_mode and dilations", ["ceil_mode", "dilations"]), "LpPool");
        At(18, Adds("antialias, axes and keep_aspect_ratio_policy", ["antialias", "axes", "keep_aspect_ratio_policy"]), "Resize");
        At(18, AxesBecameInput("axes", attrs: ["noop_with_empty_axes"], firstInput: 1), ReduceButSum);
        At(18, Adds("num_outputs (without a split input, Upgrades sets it)", ["num_outputs"]), "Split");
        At(19, Types(F8), "Constant", "Identity", "If", "Loop", "Pad", "Reshape", "Scan", "Shape", "Size");
        At(19, Types(Str), "Equal");
        At(19, Adds("saturate (float 8 only)", ["saturate"], types: F8), "Cast", "CastLike");
        At(19, Adds("dilations", ["dilations"]), "AveragePool");
        At(19, Wider, "Resize"); // the coordinate mode half_pixel_symmetric
        At(20, Types([Bf16, .. F8]), "ConstantOfShape");
        At(20, Types([F16, Bf16, .. F8]), "IsInf");
        At(20, Types(F8), "IsNaN");
        At(20, Types(Bool), "ReduceMax", "ReduceMin");
        At(21, Types(Int4), "Cast", "CastLike", "Constant", "ConstantOfShape", "Identity", "If", "Loop", "Reshape", "Scan", "Shape", "Size", "Transpose");
        At(21, Types([.. F8, .. Int4]), "Flatten", "Pad", "Squeeze", "Unsqueeze");
        At(22, Types(Bf16), "EyeLike", "RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli",
            "ThresholdedRelu", "Selu", "Elu", "Mish", "HardSigmoid", "HardSwish", "Softsign", "Softplus", "Sin", "Cos", "Tan", "Asin",
            "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Round", "Det", "AveragePool", "MaxPool", "MaxUnpool", "LpPool",
            "MaxRoiPool", "Conv", "ConvTranspose", "DeformConv", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
            "InstanceNormalization", "LpNormalization", "Dropout", "RNN", "GRU", "LSTM");
        At(23, Types(F4), "Cast", "CastLike", "Constant", "ConstantOfShape", "Flatten", "Identity", "If", "Loop", "Pad", "Reshape", "Scan",
            "Shape", "Size", "Squeeze", "Transpose", "Unsqueeze");
        return e;
    }

    /// <summary>
    /// A change ONNX's version converter makes mechanically: attributes become constant inputs. <paramref name="Applies"/>:
    /// the node needs it; <paramref name="Cannot"/>: why this node cannot be rewritten (null: it can); <paramref name="Plan"/>:
    /// the rewrite.
    /// </summary>
    sealed record Upgrade(Func<NodeProto, bool> Applies, Func<NodeProto, GraphIndex, string?> Cannot, Func<NodeProto, GraphIndex, Plan> Plan);

    /// <summary>The attributes dropped, the inputs that replace those after input 0 (none: inputs unchanged; a null
    /// value: an omitted input), attributes set, inputs omitted from then on, and the op it becomes (null: the same).</summary>
    sealed record Plan(string[] Drop, (string Suffix, TensorProto? Value)[] Inputs, AttributeProto[]? Set = null, int[]? Omit = null,
        string? Op = null);

    static readonly Dictionary<(string Op, int Version), Upgrade> Upgrades = BuildUpgrades();

    static Dictionary<(string, int), Upgrade> BuildUpgrades()
    {
        var u = new Dictionary<(string, int), Upgrade>
        {
            // Clip-6(x; min, max attributes, defaults the lowest/highest float) → Clip-11(x, min, max): both bounds as
            // scalars of x's type, the defaults too (Clip-6 clamps ±inf to them; Clip-11 without an input does not).
            [("Clip", 11)] = new(_ => true,
                (n, g) => FloatOrDouble(n, g) ? null
                    : "takes min and max as inputs instead of attributes, and its input is not known to be float or double",
                (n, g) =>
                {
                    int type = g.ElemType(n.Input[0])!.Value;
                    double min = Attributes.Find(n, "min") is { } lo ? lo.F : float.MinValue;
                    double max = Attributes.Find(n, "max") is { } hi ? hi.F : float.MaxValue;
                    return new(["min", "max"], [("min", Scalar(type, min)), ("max", Scalar(type, max))]);
                }),
            // Slice-1(x; starts, ends[, axes]) → Slice-10(x, starts, ends[, axes]): the same clamping of each value.
            [("Slice", 10)] = new(_ => true,
                (n, _) => Attributes.Find(n, "starts") is null || Attributes.Find(n, "ends") is null
                    ? "takes starts, ends and axes as inputs instead of attributes, and this node lacks starts or ends" : null,
                (n, _) => new(["starts", "ends", "axes"], [("starts", Int64s(n, "starts")), ("ends", Int64s(n, "ends")),
                    ("axes", Attributes.Find(n, "axes") is null ? null : Int64s(n, "axes"))])),
            // Pad-2(x; pads, mode, value) → Pad-11(x, pads[, constant_value]): the same [x1_begin, …, x1_end, …] layout;
            // the value as a scalar of x's type (omitted when +0, Pad-11's default, or when the mode ignores it).
            [("Pad", 11)] = new(_ => true,
                (n, g) => Attributes.Find(n, "pads") is null
                    ? "takes pads and value as inputs instead of attributes, and this node lacks pads"
                    : PadValue(n) is { } v && !FloatOrDouble(n, g)
                        ? $"takes pads and value as inputs instead of attributes, and its value {v} needs its input to be known as float or double"
                        : null,
                (n, g) => new(["pads", "value"], [("pads", Int64s(n, "pads")),
                    ("value", PadValue(n) is { } v ? Scalar(g.ElemType(n.Input[0])!.Value, v) : null)])),
            // TopK-1(x; k) → TopK-10(x, K = [k]).
            [("TopK", 10)] = new(_ => true,
                (n, _) => Attributes.Find(n, "k") is null ? "takes k as an input instead of an attribute, and this node lacks k" : null,
                (n, _) => new(["k"], [("k", Int64s([Attributes.Find(n, "k")!.I]))])),
            // Split-2/11(x; split) → Split-13(x, split).
            [("Split", 13)] = AttributeToInput("split"),
            // Split-13(x) with no split → Split-18(x; num_outputs = outputs): equal parts, as Split-13 makes (it requires the
            // axis to divide evenly; Split-18 also accepts a smaller last part, which Split-13 rejects).
            [("Split", 18)] = new(n => (n.Input.Count < 2 || n.Input[1].Length == 0) && Attributes.Find(n, "num_outputs") is null,
                (_, _) => null, (n, _) => new([], [], [new AttributeProto
                    { Name = "num_outputs", Type = AttributeProto.Types.AttributeType.Int, I = n.Output.Count }])),
            // Dropout-10/11(x; ratio) → Dropout-12(x, ratio): without training_mode both are the identity.
            [("Dropout", 12)] = new(n => Attributes.Find(n, "ratio") != null, (_, _) => null,
                (n, _) => new(["ratio"], [("ratio", Scalar(1, Attributes.Find(n, "ratio")!.F))])),
            // Resize-11(x, roi, scales = [], sizes) → Resize-13(x, roi, "", sizes): 11 wants an empty scales tensor beside
            // sizes, 13 an omitted scales.
            [("Resize", 13)] = new(n => n.Input.Count > 3 && n.Input[3].Length > 0 && n.Input[2].Length > 0,
                (n, g) => g.TryGetConstant(n.Input[2], out var t) && t.Dims.Count > 0 && t.Dims.Any(d => d == 0) ? null
                    : "omits scales when sizes is given, and this node's scales is not a constant empty tensor",
                (_, _) => new([], [], Omit: [2])),
            // Upsample-9(x, scales) → Resize-10(x, scales), the same modes: deprecated at 10 for Resize.
            [("Upsample", 10)] = new(_ => true, (n, g) => Upscales(n, g) != null ? null
                    : "is replaced by Resize; only for constant scales ≥ 1 (then both round nearest down) and mode nearest or linear",
                (_, _) => new([], [], Op: "Resize")),
            // Resize-10(x, scales) → Resize-11(x, roi = [], scales; coordinate_transformation_mode asymmetric, nearest_mode
            // floor): 10 maps output i to input i / scale and rounds nearest down when upsampling.
            [("Resize", 11)] = new(_ => true, (n, g) => Upscales(n, g) != null ? null
                    : "changed its inputs and coordinate transformation; kept only for constant scales ≥ 1 and mode nearest or linear",
                (n, g) =>
                {
                    var roi = new TensorProto { DataType = 1 };
                    roi.Dims.Add(0);
                    return new(["coordinate_transformation_mode", "nearest_mode"], [("roi", roi), ("scales", Upscales(n, g)!.Clone())],
                        [Text("coordinate_transformation_mode", "asymmetric"), Text("nearest_mode", "floor")]);
                }),
            // Scatter-9/10 → ScatterElements-11 at Scatter's deprecation: the same inputs, axis and meaning.
            [("Scatter", 11)] = new(_ => true, (_, _) => null, (_, _) => new([], [], Op: "ScatterElements")),
            // Upsample-7(x; scales) → Upsample-9(x, scales).
            [("Upsample", 9)] = new(n => Attributes.Find(n, "scales") != null, (_, _) => null, (n, _) =>
            {
                var t = new TensorProto { DataType = 1 };
                t.Dims.Add(Attributes.Find(n, "scales")!.Floats.Count);
                t.FloatData.AddRange(Attributes.Find(n, "scales")!.Floats);
                return new(["scales"], [("scales", t)]);
            }),
            // GroupNormalization-18(x, scale[G], bias[G]) → -21(x, scale[C], bias[C]; stash_type = their type): each group's
            // value repeated over its C/G channels; 18 computes in x's type, 21 in stash_type (float by default).
            [("GroupNormalization", 21)] = new(_ => true, (n, g) => PerGroup(n, g) != null ? null
                    : "takes scale and bias per channel instead of per group, and this node's are not constants of num_groups values over a known channel count it divides",
                (n, g) =>
                {
                    var (scale, bias, channels) = PerGroup(n, g)!.Value;
                    TensorProto PerChannel(TensorProto t)
                    {
                        var v = g.Model.ReadDoubles(t);
                        var c = new double[channels];
                        for (int i = 0; i < channels; i++) c[i] = v[i / (channels / v.Length)];
                        return TensorData.Create("", t.DataType, new long[] { channels }, c);
                    }
                    return new([], [("scale", PerChannel(scale)), ("bias", PerChannel(bias))], [new AttributeProto
                        { Name = "stash_type", Type = AttributeProto.Types.AttributeType.Int, I = scale.DataType }]);
                }),
            // Squeeze/Unsqueeze-1/11(x; axes) → -13(x, axes).
            [("Squeeze", 13)] = AttributeToInput("axes"),
            [("Unsqueeze", 13)] = AttributeToInput("axes"),
            // ReduceSum-1/11 → 13, the other reductions → 18 (x; axes) → (x, axes); noop_with_empty_axes stays 0, so an
            // empty list still reduces every axis (the input is then omitted).
            [("ReduceSum", 13)] = AttributeToInput("axes", omitEmpty: true),
        };
        foreach (var op in ReduceButSum) u.Add((op, 18), AttributeToInput("axes", omitEmpty: true));
        return u;
    }

    static Upgrade AttributeToInput(string attr, bool omitEmpty = false) => new(n => Attributes.Find(n, attr) != null, (_, _) => null,
        (n, _) => new([attr], [(attr, omitEmpty && Attributes.Find(n, attr)!.Ints.Count == 0 ? null : Int64s(n, attr))]));

    /// <summary>GroupNormalization-18's constant scale and bias of num_groups floating-point values each, and the channel
    /// count the graph proves (divisible by num_groups); null otherwise.</summary>
    static (TensorProto Scale, TensorProto Bias, int Channels)? PerGroup(NodeProto n, GraphIndex g)
    {
        long groups = Attributes.Int(n, "num_groups", 0);
        if (n.Input.Count < 3 || groups <= 0 || !g.TryGetConstant(n.Input[1], out var scale) || !g.TryGetConstant(n.Input[2], out var bias)
            || g.ProvenShape(n.Input[0]) is not { Length: > 1 } shape || shape[1] <= 0 || shape[1] % groups != 0 || shape[1] > Array.MaxLength)
            return null;
        foreach (var t in new[] { scale, bias })
            if (!ElementType.IsFoldable(t.DataType) || t.DataType != scale.DataType || TensorData.ElementCount(t) != groups) return null;
        return (scale, bias, (int)shape[1]);
    }

    /// <summary>Upsample-9's or Resize-10's scales (input 1) when a constant of values ≥ 1 and the mode nearest or linear;
    /// else null.</summary>
    static TensorProto? Upscales(NodeProto n, GraphIndex g) =>
        Attributes.Find(n, "mode")?.S.ToStringUtf8() is null or "nearest" or "linear" && n.Input.Count == 2
        && g.TryGetConstant(n.Input[1], out var t) && t.DataType == 1 && g.Model.ReadDoubles(t).All(x => x >= 1) ? t : null;

    static AttributeProto Text(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = Google.Protobuf.ByteString.CopyFromUtf8(value) };

    static bool FloatOrDouble(NodeProto n, GraphIndex g) => n.Input.Count > 0 && g.ElemType(n.Input[0]) is 1 or 11;

    /// <summary>Pad-2's fill value when it matters and is not +0 (Pad-11's default), else null.</summary>
    static double? PadValue(NodeProto n) =>
        Attributes.Find(n, "mode") is { } m && m.S.ToStringUtf8() != "constant" ? null
        : Attributes.Find(n, "value") is { } a && (a.F != 0 || float.IsNegative(a.F)) ? a.F : null;

    static TensorProto Scalar(int type, double value)
    {
        var t = new TensorProto { DataType = type };
        if (type == 11) t.DoubleData.Add(value); else t.FloatData.Add((float)value);
        return t;
    }

    static TensorProto Int64s(NodeProto n, string attr) => Int64s(Attributes.Find(n, attr)!.Ints);

    static TensorProto Int64s(IReadOnlyCollection<long> values)
    {
        var t = new TensorProto { DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(values.Count);
        t.Int64Data.AddRange(values);
        return t;
    }

    /// <summary>Rewrites <paramref name="n"/> by <paramref name="plan"/>; <paramref name="add"/> stores a constant and
    /// names it.</summary>
    static void Rewrite(NodeProto n, Plan plan, Func<string, TensorProto, string> add)
    {
        var kept = n.Attribute.Where(a => !plan.Drop.Contains(a.Name)).ToList();
        n.Attribute.Clear();
        n.Attribute.AddRange(kept);
        n.Attribute.AddRange(plan.Set ?? []);
        if (plan.Op != null) n.OpType = plan.Op;
        var inputs = plan.Inputs.Length == 0 ? n.Input.ToList() : [n.Input[0]];
        foreach (var (suffix, value) in plan.Inputs) inputs.Add(value is null ? "" : add(suffix, value));
        foreach (int i in plan.Omit ?? []) inputs[i] = "";
        while (inputs[^1].Length == 0) inputs.RemoveAt(inputs.Count - 1);
        n.Input.Clear();
        n.Input.AddRange(inputs);
    }

    /// <summary>What changed, for versions without an exemption worth naming.</summary>
    static readonly Dictionary<(string, int), string> Changes = new()
    {
        [("RoiAlign", 16)] = "changed the default coordinate_transformation_mode",
        [("GridSample", 20)] = "renamed its mode values",
        [("DFT", 20)] = "takes dft_length and axis as inputs",
        [("OneHot", 11)] = "changed how negative indices are read",
        [("Scan", 9)] = "dropped the batch axis",
    };

    /// <summary>Nodes (in every graph) that would change meaning if the default opset went from its current version to
    /// <paramref name="target"/>, each with the version change; empty when raising is safe. Nodes the rewrite will
    /// remove can be excused.</summary>
    public static List<string> Blockers(OnnxModel model, long target, IReadOnlySet<NodeProto>? excused = null)
    {
        long from = model.DefaultOpset;
        var blockers = new List<string>();
        if (target <= from) return blockers;
        if (target > HighestKnown)
            return [$"opset {target} is past opset {HighestKnown}, the newest NormFold knows"];
        var skip = Skipped(excused);
        foreach (var g in Indexed(model))
            foreach (var n in g.Graph.Node)
            {
                if (!Attributes.IsDefaultDomain(n) || skip.Contains(n)) continue;
                if (Walk(n, g, from, target, null) is { } why) blockers.Add($"{Attributes.Describe(n)} ({why})");
            }
        return blockers;
    }

    /// <summary>Why <paramref name="n"/> would mean something else at <paramref name="target"/>, or null; walks its
    /// versions in (<paramref name="from"/>, <paramref name="target"/>] on a copy, rewriting it where an upgrade applies
    /// (later versions, of the op it became, judge the rewritten node), and adds each rewrite to <paramref name="plans"/>.</summary>
    static string? Walk(NodeProto n, GraphIndex g, long from, long target, List<Plan>? plans)
    {
        if (!OnnxOpVersions.Since.TryGetValue(n.OpType, out var first))
            return $"not an ai.onnx operator of opsets 1..{HighestKnown}";
        if (first[0] > from)
            return $"{n.OpType} does not exist before opset {first[0]}, the model imports {from}";
        for (long at = from; ;)
        {
            string op = n.OpType;
            // A deprecation (the op's last version) passes only by an upgrade to another op.
            if (OnnxOpVersions.Deprecated.TryGetValue(op, out int gone) && gone <= target
                && !(gone > at && Upgrades.TryGetValue((op, gone), out var replace) && replace.Applies(n)))
                return $"{op} is deprecated from opset {gone}";
            int v = OnnxOpVersions.Since[op].FirstOrDefault(x => x > at && x <= target);
            if (v == 0) return null;
            at = v;
            bool has = Exemptions.TryGetValue((op, v), out var ex);
            if (Upgrades.TryGetValue((op, v), out var up) && up.Applies(n))
            {
                // The exemption's conditions (types, attributes and inputs the old node must not have) still hold.
                if (((has ? Fails(ex!, n, g) : null) ?? up.Cannot(n, g)) is { } no) return $"{op}-{v} {no}";
                var plan = up.Plan(n, g);
                plans?.Add(plan);
                n = n.Clone();
                // The copy's new constants go into this throwaway index under names no node reads, so that a later
                // version's upgrade finds them as constants.
                Rewrite(n, plan, (suffix, t) =>
                {
                    string name = $"\u0001{suffix}:{g.Initializers.Count}";
                    g.Initializers[name] = t;
                    return name;
                });
                continue;
            }
            string? why = has
                ? Fails(ex!, n, g)
                : Changes.GetValueOrDefault((op, v)) ?? "changed its definition, and NormFold has no rule that this node keeps its meaning";
            if (why != null) return $"{op}-{v} {why}";
        }
    }

    static string? Fails(Exemption ex, NodeProto n, GraphIndex g)
    {
        if (ex.NewTypes is { Length: > 0 } types)
            foreach (var name in n.Input.Concat(n.Output))
                if (name.Length > 0 && g.ElemType(name) is { } t && types.Contains(t))
                    return $"added the element type {(TensorProto.Types.DataType)t} that '{name}' has, so this node was not valid before";
        if (ex.NewAttributes?.FirstOrDefault(a => Attributes.Find(n, a) != null) is { } attr)
            return $"added the attribute {attr} that this node already has, so it was not valid before";
        if (n.Input.Skip(ex.FirstNewInput).Any(i => i.Length > 0))
            return $"added input {ex.FirstNewInput + 1} that this node already has, so it was not valid before";
        return ex.Check?.Invoke(n, g);
    }

    /// <summary>An index for every graph the default opset governs: the main graph, training graphs and every
    /// nested body (indexed under its enclosing graph, so outer names resolve), and bodies inside functions.</summary>
    static IEnumerable<GraphIndex> Indexed(OnnxModel model)
    {
        var roots = new List<GraphProto>();
        if (model.Proto.Graph != null) roots.Add(model.Proto.Graph);
        foreach (var ti in model.Proto.TrainingInfo)
        {
            if (ti.Initialization != null) roots.Add(ti.Initialization);
            if (ti.Algorithm != null) roots.Add(ti.Algorithm);
        }
        foreach (var f in model.Proto.Functions)
            foreach (var n in f.Node) roots.AddRange(OnnxModel.Subgraphs(n));
        var stack = new Stack<GraphIndex>(roots.Select(r => new GraphIndex(r, model)));
        while (stack.Count > 0)
        {
            var g = stack.Pop();
            yield return g;
            foreach (var n in g.Graph.Node)
                foreach (var body in OnnxModel.Subgraphs(n))
                    stack.Push(new GraphIndex(body, model, g, $"{g.Path}/{n.Name}"));
        }
    }

    /// <summary>Sets the default-domain opset import to <paramref name="target"/>. The IR version follows once the
    /// rewrites are done (<see cref="RaiseIrVersion"/>): until then the graphs keep the IR version's meaning of an
    /// initializer listed as a graph input.
    /// Nodes an upgrade covers (<see cref="Upgrades"/>) are rewritten first, except <paramref name="excused"/> ones; new
    /// constants are named by <paramref name="names"/>, and <paramref name="live"/> (an index in use, with its parents)
    /// is kept current.</summary>
    public static void Raise(OnnxModel model, long target, NameAllocator? names = null, IReadOnlySet<NodeProto>? excused = null,
        GraphIndex? live = null)
    {
        long from = model.DefaultOpset;
        names ??= new NameAllocator(model);
        // Every rewrite is planned before any is made: on the graphs exactly as Blockers judged them.
        var work = new List<(GraphIndex G, NodeProto Node, List<Plan> Plans)>();
        var skip = Skipped(excused);
        foreach (var g in Indexed(model).ToList())
            foreach (var n in g.Graph.Node)
            {
                if (!Attributes.IsDefaultDomain(n) || skip.Contains(n)) continue;
                var plans = new List<Plan>();
                if (Walk(n, g, from, target, plans) is { } why)
                    throw new InvalidOperationException($"raising to opset {target}: {Attributes.Describe(n)} ({why}), which Blockers did not report");
                if (plans.Count > 0) work.Add((g, n, plans));
            }
        foreach (var (g, n, plans) in work)
        {
            var index = Live(live, g.Graph);
            index?.RemoveNode(n);
            foreach (var plan in plans)
                Rewrite(n, plan, (suffix, t) =>
                {
                    t.Name = names.FreshValue($"{(n.Name.Length > 0 ? n.Name : n.Output[0])}_{suffix}");
                    g.Graph.Initializer.Add(t);
                    if (index != null) index.Initializers[t.Name] = t;
                    return t.Name;
                });
            index?.AddNode(n);
        }
        foreach (var o in model.Proto.OpsetImport)
            if (o.Domain is "" or "ai.onnx") o.Version = target;
    }

    /// <summary>The excused nodes themselves (a node equal to one in content is not excused).</summary>
    static HashSet<NodeProto> Skipped(IReadOnlySet<NodeProto>? excused) =>
        new(excused ?? (IEnumerable<NodeProto>)[], ReferenceEqualityComparer.Instance);

    static GraphIndex? Live(GraphIndex? live, GraphProto graph)
    {
        for (var i = live; i != null; i = i.Parent)
            if (ReferenceEquals(i.Graph, graph)) return i;
        return null;
    }

    /// <summary>Raises the IR version to one that allows the default-domain opset. Before IR version 4 every initializer
    /// is listed as a graph input and stays a constant; from 4 on such an input can be fed at run time, so crossing it
    /// unlists the initializers of every graph (a body's, too: IR 3 lists them after its arguments).</summary>
    public static void RaiseIrVersion(OnnxModel model)
    {
        long ir = model.DefaultOpset switch { <= 18 => 8, <= 20 => 9, <= 22 => 10, _ => 11 };
        long before = model.Proto.IrVersion;
        if (before >= ir) return;
        model.Proto.IrVersion = ir;
        if (before is < 1 or >= 4) return;
        foreach (var graph in Indexed(model).Select(g => g.Graph).ToList())
        {
            var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
            var inputs = graph.Input.Where(v => !initializers.Contains(v.Name)).ToList();
            if (inputs.Count == graph.Input.Count) continue;
            graph.Input.Clear();
            graph.Input.AddRange(inputs);
        }
    }
}
