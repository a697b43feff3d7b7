using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// Models for the optimistic finite check (PipelineOptions.CheckFiniteWhenComputed): folds that supersede one another
/// within a run, with weights and factors at the edge of the stored type's range, so that a scaled weight — a final
/// one or one a later fold replaces — overflows in about a third of the cases. Blocks, each on its own graph input:
/// P → steps (BN, Mul, Div by per-channel constants) with P a Conv, ConvTranspose, Gemm or MatMul; Mul → P → steps
/// (both sides of one weight); two P reading one weight; the same inside both branches of an If. Weights of float,
/// float16, bfloat16, double, now and then with ±∞/NaN elements, in raw_data or float_data / double_data.
/// </summary>
internal static class FiniteEdge
{
    public sealed record Case(int Seed, ModelProto Model, string Tags, bool ExternalInput, SaveOptions Save, PipelineOptions Options)
    {
        public override string ToString() => $"finite-edge:{Seed} ({Tags})";
    }

    public static double Max(int type) => type switch
    {
        F16 => 65504.0,
        BF16 => 3.3895313892515355e38,
        F64 => double.MaxValue,
        _ => float.MaxValue,
    };

    public static Case Make(int seed)
    {
        var r = new Random(Families.CaseSeed("finite-edge", seed, Seeding.Mixed));
        T Any<T>(params T[] items) => items[r.Next(items.Length)];
        int type = r.Next(10) switch { < 5 => F32, 5 or 6 => F16, 7 => BF16, _ => F64 };
        long opset = type == BF16 ? Any(15L, 17) : Any(13L, 15, 17);
        var g = new GraphBuilder(opset, r.Next());
        var tags = new List<string> { ElementType.Name(type) };
        // Weights reach max·2^−edge; a factor of 2^u with u > edge overflows them.
        int edge = r.Next(0, 12);
        tags.Add($"edge{edge}");
        int blocks = 1 + r.Next(3), n = 0;
        string Fresh(string p) => $"{p}{n++}";

        // A factor of magnitude 2^u·(0.75…1.25), either sign: mostly below the edge, above it now and then.
        double Factor()
        {
            int u = r.Next(20) == 0 ? r.Next(edge + 1, edge + 6) : r.Next(-edge / 3 - 3, edge / 3);
            return Math.Pow(2, u) * (0.75 + 0.5 * r.NextDouble()) * (r.Next(6) == 0 ? -1 : 1);
        }

        double[] Weights(long count)
        {
            double top = Max(type) * Math.Pow(2, -edge);
            var w = new double[count];
            for (long i = 0; i < count; i++) w[i] = (r.NextDouble() * 2 - 1) * top;
            for (int k = r.Next(3); k > 0; k--) w[r.Next((int)count)] = top * (r.Next(2) == 0 ? -1 : 1) * (0.97 + 0.03 * r.NextDouble());
            if (r.Next(8) == 0) w[r.Next((int)count)] = Any(double.NaN, double.PositiveInfinity, double.NegativeInfinity);
            return w;
        }

        string WeightInit(GraphBuilder b, string name, long[] dims)
        {
            var t = TensorData.Create(name, type, dims, Weights(dims.Aggregate(1L, (a, d) => a * d)));
            if (type is F32 or F64 && r.Next(5) == 0)
            {
                var values = TensorData.ReadDoubles(t, t.RawData.Span);
                t.ClearRawData();
                if (type == F32) t.FloatData.AddRange(values.Select(v => (float)v));
                else t.DoubleData.AddRange(values);
                tags.Add("typed");
            }
            b.Graph.Initializer.Add(t);
            return name;
        }

        // One affine step on channel axis 1 of a tensor of the given rank: BN (s ≈ γ), Mul by s, Div by 1/s, or Add.
        string Step(GraphBuilder b, string x, long ch, int rank)
        {
            string kind = r.Next(10) switch { < 5 => "bn", < 8 => "mul", 8 => "div", _ => "add" };
            tags.Add(kind);
            long[] cdims = rank == 4 ? [ch, 1, 1] : [ch];
            string y = Fresh("s");
            switch (kind)
            {
                case "bn":
                    var gamma = Enumerable.Range(0, (int)ch).Select(_ => Factor()).ToArray();
                    var beta = Enumerable.Range(0, (int)ch).Select(_ => r.NextDouble() - 0.5).ToArray();
                    var mean = Enumerable.Range(0, (int)ch).Select(_ => r.NextDouble() - 0.5).ToArray();
                    var variance = Enumerable.Range(0, (int)ch).Select(_ => 1.0).ToArray();
                    string p = Fresh("bn");
                    b.Node("BatchNormalization", [x, b.Init(p + ".gamma", type, [ch], gamma), b.Init(p + ".beta", type, [ch], beta),
                        b.Init(p + ".mean", type, [ch], mean), b.Init(p + ".var", type, [ch], variance)], y, p, ("epsilon", 1e-5f));
                    break;
                case "mul" or "div":
                    var s = Enumerable.Range(0, (int)ch).Select(_ => Factor()).ToArray();
                    if (kind == "div") s = s.Select(v => 1 / v).ToArray();
                    b.Node(kind == "mul" ? "Mul" : "Div", [x, b.Init(Fresh("k"), type, cdims, s)], y, Fresh(kind));
                    break;
                default:
                    b.Node("Add", [x, b.Init(Fresh("k"), type, cdims, Enumerable.Range(0, (int)ch).Select(_ => r.NextDouble() - 0.5).ToArray())], y, Fresh("add"));
                    break;
            }
            return y;
        }

        // Per block: the Conv/ConvTranspose group, Gemm's transB, alpha and beta.
        long group = 1, transB = 0;
        float alpha = 1, gemmBeta = 1;

        // P reading x and weight w; returns its output, channels and rank.
        (string Y, long Ch, int Rank) Producer(GraphBuilder b, string op, string x, long c, long m, string w, bool bias)
        {
            string y = Fresh("p");
            string[] ins = [x, w];
            switch (op)
            {
                case "Conv":
                    if (bias) ins = [.. ins, b.Init(Fresh("cb"), type, [m], Enumerable.Range(0, (int)m).Select(_ => r.NextDouble() - 0.5).ToArray())];
                    b.Node("Conv", ins, y, Fresh("conv"), ("group", group));
                    return (y, m, 4);
                case "ConvTranspose":
                    if (bias) ins = [.. ins, b.Init(Fresh("cb"), type, [m], Enumerable.Range(0, (int)m).Select(_ => r.NextDouble() - 0.5).ToArray())];
                    b.Node("ConvTranspose", ins, y, Fresh("convT"), ("group", group));
                    return (y, m, 4);
                case "Gemm":
                    if (bias) ins = [.. ins, b.Init(Fresh("gc"), type, [m], Enumerable.Range(0, (int)m).Select(_ => r.NextDouble() - 0.5).ToArray())];
                    b.Node("Gemm", ins, y, Fresh("gemm"), ("transB", transB), ("alpha", alpha), ("beta", gemmBeta));
                    return (y, m, 2);
                default:
                    b.Node("MatMul", ins, y, Fresh("matmul"));
                    return (y, m, 2);
            }
        }

        long[] WeightDims(string op, long c, long m, long k) => op switch
        {
            "Conv" => [m, c / group, k, k],
            "ConvTranspose" => [c, m / group, k, k],
            "Gemm" when transB == 1 => [m, c],
            _ => [c, m],
        };

        // A chain of 1–3 steps, sometimes ending in Relu (which stops later folds).
        string Steps(GraphBuilder b, string y, long ch, int rank)
        {
            for (int i = 1 + r.Next(3); i > 0; i--) y = Step(b, y, ch, rank);
            if (r.Next(5) == 0) y = b.Node("Relu", [y], Fresh("relu"), Fresh("relu")).Output[0];
            return y;
        }

        // ONNX Conv/ConvTranspose take no bfloat16: a bfloat16 case is Gemm/MatMul.
        string[] ops = type == BF16 ? ["Gemm", "MatMul"] : ["Conv", "Conv", "ConvTranspose", "Gemm", "MatMul", "MatMul"];
        string? cond = null;
        for (int blk = 0; blk < blocks; blk++)
        {
            string op = Any(ops);
            string kind = r.Next(10) switch { < 4 => "chain", < 6 => "both-sides", < 8 => "shared", _ => "if" };
            tags.Add($"{kind}:{op}");
            long c = Any(1L, 2, 3, 4), m = Any(1L, 2, 4, 5), k = op.StartsWith("Conv") ? Any(1L, 1, 3) : 1;
            (group, transB, alpha, gemmBeta) = (1, 0, 1, 1);
            if (op.StartsWith("Conv") && c > 1 && r.Next(3) == 0)
            {
                // Grouped (depthwise): each group's weights scaled by its own input and output channels.
                (group, m) = (c, c * Any(1L, 2));
                tags.Add("grouped");
            }
            if (op == "Gemm") (transB, alpha, gemmBeta) = (r.Next(2), Any(1f, 1f, 0.5f, 4f), Any(1f, 1f, 0.25f, 2f));
            int rank = op.StartsWith("Conv") ? 4 : 2;
            long[] xs = rank == 4 ? [1, c, 4, 4] : [2, c];
            string x = g.Input(Fresh("x"), type, xs);
            string w = WeightInit(g, Fresh("w"), WeightDims(op, c, m, k));
            bool bias = r.Next(2) == 0;
            switch (kind)
            {
                case "chain":
                {
                    var (y, ch, rk) = Producer(g, op, x, c, m, w, bias);
                    g.Output(Steps(g, y, ch, rk), type, null);
                    break;
                }
                case "both-sides":
                {
                    // x → Mul/Div(per input channel) → P → steps: the weight is scaled along both of its channel axes.
                    long[] cdims = rank == 4 ? [c, 1, 1] : [c];
                    var s = Enumerable.Range(0, (int)c).Select(_ => Factor()).ToArray();
                    string sx = g.Node(r.Next(3) == 0 ? "Div" : "Mul", [x, g.Init(Fresh("kin"), type, cdims, s)], Fresh("xin"), Fresh("in")).Output[0];
                    var (y, ch, rk) = Producer(g, op, sx, c, m, w, bias);
                    g.Output(Steps(g, y, ch, rk), type, null);
                    break;
                }
                case "shared":
                {
                    // Two producers read one weight (and one input): each fold makes its own copy.
                    for (int j = 0; j < 2; j++)
                    {
                        var (y, ch, rk) = Producer(g, op, x, c, m, w, bias && j == 0);
                        g.Output(Steps(g, y, ch, rk), type, null);
                    }
                    break;
                }
                default:
                {
                    // If(cond): both branches P → steps on the outer x, the weight the outer one or the branch's own.
                    cond ??= g.Input("cond", 9, []);
                    GraphProto Branch(string tag)
                    {
                        var b = g.Body(tag + blk);
                        string wb = r.Next(2) == 0 ? w : WeightInit(b, Fresh("wb"), WeightDims(op, c, m, k));
                        var (y, ch, rk) = Producer(b, op, x, c, m, wb, bias);
                        string z = Steps(b, y, ch, rk);
                        b.Output(z, type, null);
                        return b.Graph;
                    }
                    string o = Fresh("if");
                    g.Node("If", [cond], o, o, ("then_branch", Branch("then")), ("else_branch", Branch("else")));
                    g.Output(o, type, null);
                    break;
                }
            }
        }
        bool externalInput = r.Next(4) == 0;
        if (externalInput) tags.Add("external-input");
        var save = r.Next(4) == 0 ? new SaveOptions { ExternalData = ExternalDataMode.All, ExternalThreshold = Any(0L, 16, 64) } : new SaveOptions();
        if (save.ExternalData == ExternalDataMode.All) tags.Add("external-output");
        var options = new PipelineOptions { KeepStandaloneBatchNorm = r.Next(5) == 0 };
        if (options.KeepStandaloneBatchNorm) tags.Add("keep-bn");
        if (r.Next(5) == 0)
        {
            // A rule off: the other rules take its folds in other orders (a BN alone where the affine rule would take a piece).
            string off = Any([.. RuleRegistry.RuleNames]);
            options = options with { DisabledRules = new HashSet<string> { off } };
            tags.Add("disable:" + off);
        }
        return new Case(seed, g.Proto, string.Join(",", tags.Distinct()), externalInput, save, options);
    }

    // ---- the property ------------------------------------------------------------------------------------------

    /// <summary>The case's input as dir/m.onnx: protobuf's bytes, or saved with external data as <paramref name="save"/> says.</summary>
    public static string WriteInput(ModelProto model, SaveOptions? save, string dir)
    {
        Directory.CreateDirectory(dir);
        string input = Path.Combine(dir, "m.onnx");
        if (save is null) File.WriteAllBytes(input, model.ToByteArray());
        else using (var m = new OnnxModel(model.Clone())) ModelWriter.Save(m, input, save);
        return input;
    }

    /// <summary>What one way of folding gave: the decisions, the bytes written (model and data file), or the error.</summary>
    public sealed record Run(string Log, byte[] Model, byte[] Data, string? Error)
    {
        public string Differs(Run other)
        {
            if (Error != other.Error) return $"error '{Error}' vs '{other.Error}'";
            if (Log != other.Log) return $"decisions differ:\n      {Log.Replace("\n", "\n      ")}\n    vs\n      {other.Log.Replace("\n", "\n      ")}";
            if (!Model.AsSpan().SequenceEqual(other.Model)) return $"model bytes differ ({Model.Length} vs {other.Model.Length} bytes, first at {FirstDifference(Model, other.Model)})";
            if (!Data.AsSpan().SequenceEqual(other.Data)) return $"data file bytes differ ({Data.Length} vs {other.Data.Length} bytes, first at {FirstDifference(Data, other.Data)})";
            return "";
        }

        static int FirstDifference(byte[] a, byte[] b)
        {
            int i = 0;
            while (i < a.Length && i < b.Length && a[i] == b[i]) i++;
            return i;
        }
    }

    public static string Summary(RewriteLog log) => string.Join("\n", log.Decisions.Select(d =>
        $"{d.Graph}/{d.Anchor} {d.Outcome} {d.Rule} → {d.Target} {d.Reason} [{string.Join(",", d.Created)}] {d.Detail}"));

    /// <summary>The result of one case: the pre-checked fold, and what differs from it (empty: nothing).</summary>
    public sealed record Verdict(Case Case, Run PreChecked, bool OptimisticThrew, bool Refused, List<string> Divergences);

    /// <summary>
    /// Folds the case four ways and compares each with the pre-checked deferred fold (CheckFiniteWhenComputed off):
    /// one optimistic attempt (CheckFiniteWhenComputed on; when its save throws ScaledWeightOverflow, no bytes to
    /// compare — the caller folds again), Folding.FoldFile (optimistic, retried), and the eager fold (no deferral).
    /// </summary>
    public static Verdict Check(Case c, string dir)
    {
        string input = WriteInput(c.Model, c.ExternalInput ? new SaveOptions { ExternalData = ExternalDataMode.All, ExternalThreshold = 0 } : null, dir);
        Run Fold(string name, Func<string, RewriteLog> fold)
        {
            string d = Path.Combine(dir, name), output = Path.Combine(d, "out.onnx");
            Directory.CreateDirectory(d);
            string log;
            try { log = Summary(fold(output)); }
            catch (Exception e) when (e is InvalidModelException or InvalidUsageException or NormFoldIOException)
            {
                return new Run("", [], [], $"{e.GetType().Name}: {e.Message.Replace(dir, "<dir>").Replace("/" + name + "/", "/")}");
            }
            var data = Path.Combine(d, "out.onnx.data");
            return new Run(log, File.ReadAllBytes(output), File.Exists(data) ? File.ReadAllBytes(data) : [], null);
        }
        RewriteLog Once(string output, bool defer, bool optimistic)
        {
            using var model = OnnxModel.Load(input);
            var log = Folding.Fold(model, c.Options with { DeferWeightArithmetic = defer, CheckFiniteWhenComputed = optimistic }, justLoaded: true).Log;
            ModelWriter.Save(model, output, c.Save);
            return log;
        }
        var pre = Fold("pre", o => Once(o, true, false));
        bool refused = pre.Log.Contains(nameof(SkipReason.FoldedValueNotFinite));
        var divergences = new List<string>();
        bool threw = false;
        try
        {
            var optimistic = Fold("optimistic", o => Once(o, true, true));
            if (optimistic.Differs(pre) is { Length: > 0 } d) divergences.Add("one optimistic attempt (no overflow found while writing): " + d);
        }
        catch (ScaledWeightOverflow) { threw = true; }
        var library = Fold("library", o => Folding.FoldFile(input, o, c.Options, c.Save).Log);
        if (library.Differs(pre) is { Length: > 0 } l) divergences.Add("Folding.FoldFile: " + l);
        var eager = Fold("eager", o => Once(o, false, false));
        if (eager.Differs(pre) is { Length: > 0 } e) divergences.Add("eager fold: " + e);
        return new Verdict(c, pre, threw, refused, divergences);
    }
}
