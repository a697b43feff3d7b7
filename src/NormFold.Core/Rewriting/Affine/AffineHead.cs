using NormFold.Graph;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.Affine;

/// <summary>
/// Anchoring of the affine rules. A run of per-channel affine nodes (Mul/Div/Add/Sub by a constant, or BN), each read
/// by the next alone, is cut into pieces with at most one BN each, and each piece gets one decision on its anchor:
/// the BN when it has one (so every BN keeps exactly one decision), else the run's first node.
///   BN's piece: the nodes before it back to the run's start (unless a BN comes earlier in the run), the BN, and the
///   nodes after it up to the next BN.   Other nodes are no candidates: their fate is their anchor's.
/// A lone Add/Sub after a MatMul is its bias, no candidate either; nor is a piece without a BN that no rule could act on
/// (no linear op next to it, nothing that changes no value in it, and merging would not shrink it: GELU's Add of 1,
/// a LayerNorm's γ and β).
/// </summary>
internal static class AffineHead
{
    /// <summary>
    /// Null when the anchor anchors a piece: then <paramref name="piece"/> lists its nodes in order and
    /// <paramref name="x"/> is the first one's data input. Otherwise NoCandidate, or the refusal of an affine op that
    /// cannot be used.
    /// </summary>
    public static Match? Piece(GraphIndex g, NodeProto anchor, out string x, out List<NodeProto> piece)
    {
        x = "";
        piece = [];
        if (!IsAffineNode(g, anchor, out var refusal)) return refusal ?? (Match)new Match.NoCandidate("not a Mul/Div/Add/Sub by a constant");
        bool bn = IsBn(anchor);
        if (!bn && Previous(g, anchor) is { } previous)
            return new Match.NoCandidate($"decided with {Attributes.Describe(RunStartOrBn(g, previous))}");
        var before = new List<NodeProto>();
        if (bn)
        {
            for (var p = Previous(g, anchor); p is not null; p = Previous(g, p))
            {
                if (IsBn(p)) { before.Clear(); break; }
                before.Insert(0, p);
            }
        }
        piece.AddRange(before);
        piece.Add(anchor);
        for (var n = Next(g, anchor); n is not null; n = Next(g, n))
        {
            if (IsBn(n))
            {
                if (bn) break;
                return new Match.NoCandidate($"decided with {Attributes.Describe(n)}");
            }
            piece.Add(n);
        }
        x = piece[0].Input[DataSlot(g, piece[0])];
        if (piece is [{ OpType: "Add" or "Sub" } lone] && g.Producer(x) is { OpType: "MatMul" } matmul && Attributes.IsDefaultDomain(matmul))
            return new Match.NoCandidate($"the bias add of {Attributes.Describe(matmul)}: nothing to fold, a MatMul has no bias of its own");
        if (!piece.Any(IsBn) && !NextToLinear(g, x, piece[^1].Output[0]) && !MergeCouldShrink(g, piece) && !piece.Any(n => IsIdentity(g, n)))
            return new Match.NoCandidate("no linear op next to it and nothing to merge it with");
        return piece.Any(IsBn) ? null : InActivation(g, x, piece[0], piece[^1].Output[0]);
    }

    /// <summary>
    /// x → piece → f(elementwise) → g(x, ·): HardSwish x·clip(x + 3, 0, 6)/6, Swish x·σ(βx), GELU x·(1 + erf(x/√2))/2.
    /// The piece's output reaches, through elementwise ops only, a node that also reads x: folding the piece anywhere
    /// changes that other read of x, so it is part of an activation, never foldable (PartOfActivation).
    /// </summary>
    static Match.Refused? InActivation(GraphIndex g, string x, NodeProto first, string y)
    {
        if (g.Consumers(x).Count < 2) return null;
        var queue = new Queue<(string Name, string Path)>([(y, "")]);
        var seen = new HashSet<string>(StringComparer.Ordinal) { y };
        while (queue.Count > 0 && seen.Count <= 16)
        {
            var (name, path) = queue.Dequeue();
            foreach (var c in g.Consumers(name))
            {
                if (!ReferenceEquals(c, first) && c.Input.Contains(x))
                    return Match.Refuse(SkipReason.PartOfActivation,
                        $"'{x}' is also read by {Attributes.Describe(c)}, which its result reaches{(path.Length > 0 ? " through " + path : "")}: " +
                        "part of an activation x·f(x, …); folding it would change that other read of x");
                if (Elementwise.Contains(c.OpType) && Attributes.IsDefaultDomain(c) && c.Output.Count > 0 && c.Output[0].Length > 0
                    && seen.Add(c.Output[0]))
                    queue.Enqueue((c.Output[0], path.Length > 0 ? $"{path}, {Attributes.Describe(c)}" : Attributes.Describe(c)));
            }
        }
        return null;
    }

    /// <summary>Ops whose output element i depends on their inputs' element i alone.</summary>
    static readonly HashSet<string> Elementwise = new(StringComparer.Ordinal)
    {
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Clip", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid",
        "HardSwish", "Tanh", "Erf", "Exp", "Log", "Softplus", "Softsign", "Elu", "Selu", "Celu", "Gelu", "Mish", "Neg",
        "Abs", "Sqrt", "Reciprocal", "Identity", "Sin", "Cos",
    };

    static bool IsBn(NodeProto n) => n.OpType == "BatchNormalization";

    /// <summary>x·1, x/1, x + 0, x − 0: an op that changes no value (it may still broadcast).</summary>
    public static bool IsIdentity(GraphIndex g, NodeProto n) => AffineOp.TryRead(g, n, out _) is { } op &&
        (op.Kind is "Mul" or "Div" && op.C.Values.All(v => v == 1.0) || op.Kind is "Add" or "Sub" && op.C.Values.All(v => v == 0.0));

    static readonly HashSet<string> LinearOps = new(StringComparer.Ordinal) { "Conv", "ConvTranspose", "Gemm", "MatMul" };

    /// <summary>A linear op produces <paramref name="x"/> or reads <paramref name="y"/>: a fold could take the piece.</summary>
    static bool NextToLinear(GraphIndex g, string x, string y) =>
        g.Producer(x) is { } p && HasWeight(g, p) || g.Consumers(y).Any(c => HasWeight(g, c));

    /// <summary>A linear op whose weight (input 1) no other node computes: a MatMul of two activations (attention's
    /// Q·Kᵀ) never takes a constant in.</summary>
    static bool HasWeight(GraphIndex g, NodeProto n) =>
        LinearOps.Contains(n.OpType) && Attributes.IsDefaultDomain(n) && n.Input.Count > 1
        && (g.Producer(n.Input[1]) is null || g.TryGetConstant(n.Input[1], out _));

    /// <summary>
    /// Whether merging could give fewer nodes than the piece has (or will have): scales alone (Mul, Div) or shifts alone (Add, x − c)
    /// compose into one node, anything else into two (Mul + Add).
    /// </summary>
    public static bool MergeCouldShrink(GraphIndex g, IReadOnlyList<NodeProto> piece)
    {
        bool scales = true, shifts = true;
        foreach (var n in piece)
        {
            string kind = IsBn(n) ? "BN" : AffineOp.TryRead(g, n, out _)?.Kind ?? "";
            scales &= kind is "Mul" or "Div";
            shifts &= kind is "Add" or "Sub";
        }
        // A BN counts twice: left alone, it would become a Mul + Add.
        return piece.Count + piece.Count(IsBn) > (scales || shifts ? 1 : 2);
    }

    static NodeProto RunStartOrBn(GraphIndex g, NodeProto n)
    {
        for (var p = n; ; p = Previous(g, p)!)
            if (IsBn(p) || Previous(g, p) is null) return p;
    }

    /// <summary>The affine node whose output <paramref name="n"/> reads as its data input, when n alone reads it.</summary>
    public static NodeProto? Previous(GraphIndex g, NodeProto n)
    {
        string x = n.Input[DataSlot(g, n)];
        return g.Producer(x) is { } p && IsAffineNode(g, p, out _) && p.Output[0] == x && !g.IsGraphOutput(x) && g.Consumers(x).Count == 1 ? p : null;
    }

    /// <summary>The affine node that alone reads <paramref name="n"/>'s output as its data input.</summary>
    public static NodeProto? Next(GraphIndex g, NodeProto n)
    {
        string y = n.Output[0];
        return !g.IsGraphOutput(y) && g.Consumers(y) is [var c] && IsAffineNode(g, c, out _) && c.Input.Count > 0 && c.Input[DataSlot(g, c)] == y
            && c.Input.Count(i => i == y) == 1 ? c : null;
    }

    /// <summary>A BN, or an affine op by a constant (usable or not: <paramref name="refusal"/> says why not).</summary>
    public static bool IsAffineNode(GraphIndex g, NodeProto n, out Match.Refused? refusal)
    {
        refusal = null;
        if (IsBn(n)) return Attributes.IsDefaultDomain(n) && n.Input.Count > 0 && n.Output.Count > 0;
        return AffineOp.TryRead(g, n, out refusal) is not null || refusal is not null;
    }

    /// <summary>The slot of the non-constant operand (0 for a BN).</summary>
    public static int DataSlot(GraphIndex g, NodeProto n) =>
        !IsBn(n) && n.Input.Count == 2 && AffineOp.TryConstant(g, n.Input[0], out _) ? 1 : 0;

    /// <summary>Refusal unless <paramref name="reader"/> alone reads <paramref name="tensor"/>, which is not a graph output.</summary>
    public static Match.Refused? SoleReader(GraphIndex g, string tensor, NodeProto reader)
    {
        if (g.IsGraphOutput(tensor))
            return Match.Refuse(SkipReason.ProducerOutputIsGraphOutput, $"'{tensor}' is a graph output");
        var consumers = g.Consumers(tensor);
        if (consumers.Count != 1 || !ReferenceEquals(consumers[0], reader))
        {
            var other = consumers.FirstOrDefault(c => !ReferenceEquals(c, reader));
            return Match.Refuse(SkipReason.ProducerHasOtherConsumers,
                $"'{tensor}' is also read by {(other is null ? "the same node twice" : Attributes.Describe(other))}" +
                (consumers.Count > 2 ? $" and {consumers.Count - 2} more" : ""));
        }
        return null;
    }

    /// <summary>The most axes a constant of <paramref name="nodes"/> has (0: scalars only, or BNs alone).</summary>
    public static int WidestConstant(GraphIndex g, IEnumerable<NodeProto> nodes) =>
        nodes.Select(n => AffineOp.TryRead(g, n, out _)?.C.Dims.Length ?? 0).DefaultIfEmpty(0).Max();

    public static string ProducerDescription(GraphIndex g, string x)
    {
        if (g.Producer(x) is { } producer) return $"input '{x}' comes from {Attributes.Describe(producer)}";
        if (g.IsGraphInput(x)) return $"input '{x}' is a graph input";
        return g.Defines(x) ? $"input '{x}' is an initializer" : $"input '{x}' comes from an enclosing graph";
    }
}
