using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// Models for the write path (ModelWriter.Save: SplicedWriter's windows of at most FileBytes.Chunk bytes, parallel
/// pwrites, payloads split at multiples of 8 bytes; deferred folds computed into them): weights of sizes around the
/// window and its multiples (± a few elements), just below and above SplicedWriter.MinSpliced, up to 4.2 MB, folded
/// (MatMul/Conv → BN: a deferred W·s) or kept (Add of a constant), in raw_data, float_data / double_data or float16 in
/// int32_data; a Conv → BN inside an If now and then; input and output with or without external data.
/// </summary>
internal static class WriteEdge
{
    public sealed record Case(int Seed, ModelProto Model, string Tags, SaveOptions? InputSave, SaveOptions Save)
    {
        public override string ToString() => $"write-edge:{Seed} ({Tags})";
    }

    public static Case Make(int seed)
    {
        var r = new Random(Families.CaseSeed("write-edge", seed, Seeding.Mixed));
        T Any<T>(params T[] items) => items[r.Next(items.Length)];
        int type = Any(F32, F32, F16, F64, BF16);
        int size = ElementType.Size(type);
        var g = new GraphBuilder(type == BF16 ? 15 : Any(13L, 15, 17), r.Next());
        var tags = new List<string> { ElementType.Name(type) };
        int n = 0;
        string Fresh(string p) => $"{p}{n++}";

        long Elements()
        {
            // The writer's window (FileBytes.Chunk, whatever it is now) and multiples of it.
            long window = FileBytes.Chunk * (long)Any(1, 1, 2, 4, 8);
            long bytes = r.Next(6) switch
            {
                0 => window - 8 * r.Next(0, 4) - size * r.Next(0, 2),
                1 => window + 8 * r.Next(0, 4) + size * r.Next(0, 2),
                2 => SplicedWriter.MinSpliced + size * r.Next(-2, 3),
                3 => r.Next(1, 4096),
                4 => 2 * window + size * r.Next(-3, 4),
                _ => r.Next(4096, 2_700_000),
            };
            return Math.Max(1, bytes / size);
        }

        TensorProto Tensor(string name, long[] dims)
        {
            long count = dims.Aggregate(1L, (a, d) => a * d);
            var values = new double[count];
            for (long i = 0; i < count; i++) values[i] = r.NextDouble() * 2 - 1;
            var t = TensorData.Create(name, type, dims, values);
            if (r.Next(4) == 0)
            {
                // The typed fields: float_data / double_data (views when large), float16 one per int32_data entry.
                var raw = t.RawData.Span;
                switch (type)
                {
                    case F32: t.FloatData.AddRange(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).ToArray()); break;
                    case F64: t.DoubleData.AddRange(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(raw).ToArray()); break;
                    default: t.Int32Data.AddRange(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(raw).ToArray().Select(v => (int)v)); break;
                }
                t.ClearRawData();
                tags.Add("typed");
            }
            return t;
        }

        string Init(GraphBuilder b, string name, long[] dims)
        {
            b.Graph.Initializer.Add(Tensor(name, dims));
            return name;
        }

        void Bn(GraphBuilder b, string x, long ch, string y)
        {
            // Factors of 0.5–2: no overflow, every fold made.
            string p = Fresh("bn");
            double[] V(double lo, double hi) => Enumerable.Range(0, (int)ch).Select(_ => lo + (hi - lo) * r.NextDouble()).ToArray();
            b.Node("BatchNormalization", [x, b.Init(p + ".gamma", type, [ch], V(0.5, 2)), b.Init(p + ".beta", type, [ch], V(-1, 1)),
                b.Init(p + ".mean", type, [ch], V(-1, 1)), b.Init(p + ".var", type, [ch], V(0.5, 2))], y, p, ("epsilon", 1e-5f));
        }

        int blocks = 1 + r.Next(4);
        string? cond = null;
        for (int k = 0; k < blocks; k++)
        {
            long count = Elements();
            string kind = type == BF16 ? Any("matmul", "kept") : Any("matmul", "conv", "conv", "kept", "if");
            tags.Add($"{kind}:{count * size}");
            switch (kind)
            {
                case "matmul":
                {
                    long cols = Any(1L, 2, 3, 4, 8, 16), rows = (count + cols - 1) / cols;
                    string x = g.Input(Fresh("x"), type, [1, rows]);
                    string w = Init(g, Fresh("w"), [rows, cols]);
                    string p = g.Node("MatMul", [x, w], Fresh("mm"), Fresh("matmul")).Output[0];
                    string y = Fresh("y");
                    Bn(g, p, cols, y);
                    g.Output(y, type, null);
                    break;
                }
                case "conv":
                {
                    long m = Any(1L, 2, 3, 5, 8), c = (count + m - 1) / m;
                    string x = g.Input(Fresh("x"), type, [1, c, 1, 1]);
                    string w = Init(g, Fresh("w"), [m, c, 1, 1]);
                    string p = g.Node("Conv", [x, w], Fresh("c"), Fresh("conv")).Output[0];
                    string y = Fresh("y");
                    Bn(g, p, m, y);
                    g.Output(y, type, null);
                    break;
                }
                case "kept":
                {
                    string x = g.Input(Fresh("x"), type, [1, count]);
                    string y = g.Node("Add", [x, Init(g, Fresh("k"), [count])], Fresh("a"), Fresh("add")).Output[0];
                    g.Output(y, type, null);
                    break;
                }
                default:
                {
                    long m = Any(1L, 2, 4), c = Math.Min((count + m - 1) / m, 4096);
                    string x = g.Input(Fresh("x"), type, [1, c, 1, 1]);
                    cond ??= g.Input("cond", 9, []);
                    string w = r.Next(2) == 0 ? Init(g, Fresh("w"), [m, c, 1, 1]) : "";
                    GraphProto Branch(string tag)
                    {
                        var b = g.Body(tag + k);
                        string wb = w.Length > 0 ? w : Init(b, Fresh("wb"), [m, c, 1, 1]);
                        string p = b.Node("Conv", [x, wb], Fresh("c"), Fresh("conv")).Output[0];
                        string y = Fresh("y");
                        Bn(b, p, m, y);
                        b.Output(y, type, null);
                        return b.Graph;
                    }
                    string o = Fresh("if");
                    g.Node("If", [cond], o, o, ("then_branch", Branch("then")), ("else_branch", Branch("else")));
                    g.Output(o, type, null);
                    break;
                }
            }
        }
        SaveOptions? inputSave = r.Next(4) == 0 ? new SaveOptions { ExternalData = ExternalDataMode.All, ExternalThreshold = Any(0L, 4096, 1 << 20) } : null;
        if (inputSave != null) tags.Add("external-input");
        var save = r.Next(3) == 0 ? new SaveOptions { ExternalData = ExternalDataMode.All, ExternalThreshold = Any(0L, 1024, 4096, 1 << 20) } : new SaveOptions();
        if (save.ExternalData == ExternalDataMode.All) tags.Add("external-output");
        return new Case(seed, g.Proto, string.Join(",", tags.Distinct()), inputSave, save);
    }

    // ---- the property ------------------------------------------------------------------------------------------

    /// <summary>A saved model's bytes as if every tensor were inline: each external tensor's bytes read from its file
    /// (location, offset, length) into raw_data, its external fields cleared; then serialised by Google.Protobuf.</summary>
    public static byte[] Inlined(string path)
    {
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        foreach (var graph in ProtoEdit.Graphs(proto))
            foreach (var t in graph.Initializer)
            {
                if (t.DataLocation != TensorProto.Types.DataLocation.External) continue;
                var kv = t.ExternalData.ToDictionary(e => e.Key, e => e.Value);
                long offset = kv.TryGetValue("offset", out var o) ? long.Parse(o) : 0;
                using var f = File.OpenRead(Path.Combine(dir, kv["location"]));
                var bytes = new byte[kv.TryGetValue("length", out var l) ? long.Parse(l) : f.Length - offset];
                f.Seek(offset, SeekOrigin.Begin);
                f.ReadExactly(bytes);
                t.RawData = ByteString.CopyFrom(bytes);
                t.ExternalData.Clear();
                t.ClearDataLocation();
            }
        return proto.ToByteArray();
    }

    /// <summary>
    /// The oracle: the input parsed by Google.Protobuf (external data inlined), folded in memory with the weights
    /// computed as each fold is made (no deferral), serialised by Google.Protobuf's WriteTo. Compared with: fold and save
    /// (Folding.FoldFile: deferred folds computed into the file's windows), ModelWriter.Write to a MemoryStream (the
    /// stream path, when nothing is external), and a load + save with nothing folded (against the input).
    /// Returns what differs (empty: nothing).
    /// </summary>
    public static List<string> Check(Case c, string dir)
    {
        string input = FiniteEdge.WriteInput(c.Model, c.InputSave, dir);
        byte[] inputInlined = Inlined(input);
        var problems = new List<string>();
        void Same(string what, byte[] expected, byte[] actual)
        {
            if (expected.AsSpan().SequenceEqual(actual)) return;
            int i = 0;
            while (i < expected.Length && i < actual.Length && expected[i] == actual[i]) i++;
            problems.Add($"{what}: {actual.Length} bytes, expected {expected.Length}; first difference at byte {i}");
        }

        var oracle = new OnnxModel(ModelProto.Parser.ParseFrom(inputInlined));
        var oracleLog = FiniteEdge.Summary(Folding.Fold(oracle).Log);
        byte[] expected = oracle.Proto.ToByteArray();

        string folded = Path.Combine(dir, "out", "folded.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(folded)!);
        var result = Folding.FoldFile(input, folded, null, c.Save);
        if (FiniteEdge.Summary(result.Log) != oracleLog) problems.Add("decisions differ from the in-memory fold's");
        Same("fold and save", expected, Inlined(folded));
        if (c.Save.ExternalData == ExternalDataMode.Keep && c.InputSave is null) Same("fold and save (the file as written)", expected, File.ReadAllBytes(folded));

        if (c.InputSave is null)
        {
            using var model = OnnxModel.Load(input);
            Folding.Fold(model, new PipelineOptions { DeferWeightArithmetic = true });
            var stream = new MemoryStream();
            ModelWriter.Write(model, stream);
            Same("ModelWriter.Write to a stream", expected, stream.ToArray());
        }

        string copy = Path.Combine(dir, "copy", "copy.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
        using (var model = OnnxModel.Load(input)) ModelWriter.Save(model, copy, c.Save);
        Same("load and save", inputInlined, Inlined(copy));
        return problems;
    }
}
