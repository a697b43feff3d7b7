using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tests.Builders;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Onnx;

public class ModelIoTests
{
    public static IEnumerable<object[]> AllModels() =>
        Directory.EnumerateFiles(ModelsDir, "*.onnx", SearchOption.AllDirectories)
            .Select(p => new object[] { Path.GetRelativePath(ModelsDir, p) }).OrderBy(p => (string)p[0]);

    [Theory]
    [MemberData(nameof(AllModels))]
    public void Every_bundled_model_round_trips_byte_for_byte(string relative)
    {
        string path = Path.Combine(ModelsDir, relative);
        var model = OnnxModel.Load(path);
        if (model.HasExternalData)
        {
            // The .onnx part of an external-data model round-trips too when saved beside its data (same locations).
            Assert.Equal(File.ReadAllBytes(path), model.Proto.ToByteArray());
            return;
        }
        string dir = TempDir();
        string output = Path.Combine(dir, "copy.onnx");
        ModelWriter.Save(model, output);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(output));
    }

    [Fact]
    public void A_model_with_nothing_to_fold_is_written_back_identical()
    {
        string path = Path.Combine(ModelsDir, "layernorm_op13.onnx");
        string output = Path.Combine(TempDir(), "out.onnx");
        var r = Folding.FoldFile(path, output);
        Assert.Empty(r.Log.Decisions);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(output));
    }

    [Fact]
    public void Unknown_fields_metadata_and_functions_survive()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 3, 4, 4]);
        g.Init("w", GraphBuilder.F32, [3, 3, 1, 1]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 3, "y");
        g.Output("y");
        var proto = g.Proto.Clone();
        proto.MetadataProps.Add(new StringStringEntryProto { Key = "author", Value = "me" });
        proto.DocString = "doc";
        proto.Functions.Add(new FunctionProto { Name = "F", Domain = "custom", Input = { "a" }, Output = { "b" } });
        byte[] bytes = proto.ToByteArray();
        // Field 99 (varint 7) is unknown to every ONNX version: it must come back.
        byte[] withUnknown = [.. bytes, 0x98, 0x06, 0x07];
        var model = OnnxModel.FromBytes(withUnknown);
        Assert.Equal(withUnknown, model.Proto.ToByteArray());
        Folding.Fold(model);
        var after = model.Proto.ToByteArray();
        Assert.Equal(new byte[] { 0x98, 0x06, 0x07 }, after[^3..]);
        Assert.Equal("me", model.Proto.MetadataProps[0].Value);
        Assert.Equal("F", model.Proto.Functions[0].Name);
        Assert.Equal("doc", model.Proto.DocString);
    }

    [Fact]
    public void External_data_model_folds_and_keeps_its_data_external()
    {
        string input = Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx");
        string dir = TempDir();
        string output = Path.Combine(dir, "folded.onnx");
        var before = Directory.GetFiles(Path.GetDirectoryName(input)!).ToDictionary(f => f, File.ReadAllBytes);
        Folding.FoldFile(input, output);
        foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f)); // input untouched
        Assert.True(File.Exists(output + ".data"));
        var folded = OnnxModel.Load(output);
        Assert.True(folded.HasExternalData);
        Assert.Equal(0, Count(folded, "BatchNormalization"));
        AssertEquivalent(OnnxModel.Load(input), folded);
    }

    [Fact]
    public void External_data_round_trip_keeps_every_tensor()
    {
        string input = Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx");
        var model = OnnxModel.Load(input);
        string output = Path.Combine(TempDir(), "copy.onnx");
        ModelWriter.Save(model, output);
        var copy = OnnxModel.Load(output);
        var a = model.AllTensors().ToList();
        var b = copy.AllTensors().ToList();
        Assert.Equal(a.Select(t => t.Name), b.Select(t => t.Name));
        for (int i = 0; i < a.Count; i++) Assert.Equal(model.RawBytes(a[i]).ToArray(), copy.RawBytes(b[i]).ToArray());
    }

    [Fact]
    public void Save_with_external_data_moves_large_tensors_out_and_back_in_is_identical()
    {
        var model = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        string dir = TempDir();
        string output = Path.Combine(dir, "ext.onnx");
        ModelWriter.Save(model, output, new SaveOptions { ExternalData = ExternalDataMode.All });
        Assert.True(new FileInfo(output).Length < 20_000);
        Assert.True(new FileInfo(output + ".data").Length > 300_000);
        // The in-memory model is unchanged by saving.
        Assert.Equal(File.ReadAllBytes(Path.Combine(ModelsDir, "resnet_tiny.onnx")), model.Proto.ToByteArray());
        var back = OnnxModel.Load(output);
        AssertEquivalent(model, back);
    }

    [Fact]
    public void A_tensor_past_2_GB_into_its_data_file_is_read_and_folded()
    {
        // resnet_tiny with its weights external, then the first conv's weight moved 2.2 GB into a sparse data file.
        string dir = TempDir(), path = Path.Combine(dir, "m.onnx");
        ModelWriter.Save(OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx")), path, new SaveOptions { ExternalData = ExternalDataMode.All });
        var proto = OnnxModel.Load(path).Proto;
        var w = proto.Graph.Initializer.First(t => t.Dims.Count == 4);
        var offset = w.ExternalData.Single(kv => kv.Key == "offset");
        var bytes = new byte[long.Parse(w.ExternalData.Single(kv => kv.Key == "length").Value)];
        using (var data = File.OpenHandle(path + ".data", FileMode.Open, FileAccess.ReadWrite))
        {
            RandomAccess.Read(data, bytes, long.Parse(offset.Value));
            RandomAccess.Write(data, bytes, 2_200_000_000);
        }
        offset.Value = "2200000000";
        File.WriteAllBytes(path, proto.ToByteArray());
        string output = Path.Combine(dir, "f.onnx");
        Folding.FoldFile(path, output);
        Assert.Equal(0, Count(OnnxModel.Load(output), "BatchNormalization"));
        Assert.True(new FileInfo(output + ".data").Length < 1_000_000);
        AssertEquivalent(OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx")), OnnxModel.Load(output));
    }

    [Fact]
    public void A_failed_parallel_write_surfaces_as_its_own_exception()
    {
        string path = Path.Combine(TempDir(), "x.bin");
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        var e = Assert.Throws<IOException>(() => FileBytes.WriteChunked(file, 5 << 20, (chunk, offset) =>
        {
            if (offset == 2 << 20) throw new IOException("No space left on device");
        }));
        Assert.Equal("No space left on device", e.Message);
    }

    [Fact]
    public void A_model_that_fails_to_load_leaves_no_mapping_behind()
    {
        string dir = TempDir(), path = Path.Combine(dir, "orphan.onnx");
        File.Copy(Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx"), path); // its data file is not copied
        for (int i = 0; i < 3; i++) Assert.Throws<InvalidModelException>(() => OnnxModel.Load(path));
        Assert.DoesNotContain(path, File.ReadAllText("/proc/self/maps"));
    }

    [Fact]
    public void Refuses_to_overwrite_the_input()
    {
        string dir = TempDir();
        string path = Path.Combine(dir, "m.onnx");
        File.Copy(Path.Combine(ModelsDir, "mlp_bn1d.onnx"), path);
        var e = Assert.Throws<InvalidModelException>(() => Folding.FoldFile(path, path));
        Assert.Contains("refusing to overwrite the input", e.Message);
        Assert.Equal(File.ReadAllBytes(Path.Combine(ModelsDir, "mlp_bn1d.onnx")), File.ReadAllBytes(path));
    }

    [Fact]
    public void Missing_external_file_is_named()
    {
        string dir = TempDir();
        File.Copy(Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx"), Path.Combine(dir, "m.onnx"));
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(Path.Combine(dir, "m.onnx")));
        Assert.Contains("external data file 'mlp_bn1d.onnx.data' not found", e.Message);
        Assert.Contains("m.onnx", e.Message);
    }

    [Fact]
    public void External_location_outside_the_model_folder_is_refused()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4]);
        var t = new TensorProto { Name = "w", DataType = 1, Dims = { 4, 4 }, DataLocation = TensorProto.Types.DataLocation.External };
        t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "../secret.bin" });
        g.Graph.Initializer.Add(t);
        g.Node("MatMul", ["x", "w"], "y");
        g.Output("y");
        string dir = TempDir();
        File.WriteAllBytes(Path.Combine(dir, "m.onnx"), g.Proto.ToByteArray());
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(Path.Combine(dir, "m.onnx")));
        Assert.Contains("leaves the model's folder", e.Message);
    }

    [Theory]
    [InlineData(new byte[0], "file is empty")]
    [InlineData(new byte[] { 0x0a, 0xff, 0xff, 0xff }, "not an ONNX model")]
    public void Garbage_is_refused_with_the_file_name(byte[] content, string expected)
    {
        string path = Path.Combine(TempDir(), "bad.onnx");
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains("bad.onnx", e.Message);
    }

    [Fact]
    public void Truncated_model_is_refused()
    {
        string path = Path.Combine(TempDir(), "cut.onnx");
        var bytes = File.ReadAllBytes(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(path));
        Assert.Contains("cut.onnx", e.Message);
    }

    [Fact]
    public void A_failed_save_leaves_no_partial_output()
    {
        var model = OnnxModel.Load(Path.Combine(ModelsDir, "mlp_bn1d.onnx"));
        string dir = TempDir();
        Assert.Throws<InvalidModelException>(() => ModelWriter.Save(model, Path.Combine(dir, "no-such-folder", "x.onnx")));
        Assert.Empty(Directory.GetFiles(dir, "*", SearchOption.AllDirectories));
    }
}

public class ZeroCopyTests
{
    [Theory]
    [MemberData(nameof(ModelIoTests.AllModels), MemberType = typeof(ModelIoTests))]
    public void Zero_copy_parse_equals_a_plain_parse_and_the_spliced_writer_equals_protobufs(string relative)
    {
        string path = Path.Combine(ModelsDir, relative);
        var bytes = File.ReadAllBytes(path);
        var zero = ZeroCopyParser.TryParse(bytes);
        Assert.NotNull(zero);
        Assert.Equal(ModelProto.Parser.ParseFrom(bytes), zero);
        Assert.Equal(bytes, zero!.ToByteArray());
        // Loaded the real way (mapped), written with every raw_data spliced in, whatever its size.
        using var model = OnnxModel.Load(path);
        var spliced = new MemoryStream();
        SplicedWriter.Write(model, spliced, minSpliced: 0);
        Assert.Equal(bytes, spliced.ToArray());
        // To a file the pieces are written at their offsets, on every core at once: the same bytes, after what the
        // stream already held, and the stream left at their end.
        string file = Path.Combine(TempDir(), "w.onnx");
        using (var stream = new FileStream(file, FileMode.CreateNew, FileAccess.Write, FileShare.None, 16))
        {
            stream.Write([1, 2, 3]);
            SplicedWriter.Write(model, stream, minSpliced: 0);
            stream.Write([4]);
        }
        Assert.Equal([1, 2, 3, .. bytes, 4], File.ReadAllBytes(file));
    }

    [Fact]
    public void The_spliced_writer_puts_raw_data_where_protobuf_does_among_later_and_unknown_fields()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4, 5, 5]);
        g.Init("w", GraphBuilder.F32, [4, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "y", "conv");
        g.Output("y");
        var w = g.Proto.Graph.Initializer.Single();
        w.DocString = "field 12, after raw_data";
        w.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" });
        // An unknown field (number 99) in the tensor and one in the graph, as a newer ONNX might write.
        byte[] Unknown(IMessage m) => [.. m.ToByteArray(), 0x98, 0x06, 0x2a, 0x40, 0x01]; // field 99 = 42; field 8 as a varint (name is a string: unknown)
        var tensor = TensorProto.Parser.ParseFrom(Unknown(w));
        g.Proto.Graph.Initializer[0] = tensor;
        var graph = GraphProto.Parser.ParseFrom(Unknown(g.Proto.Graph));
        g.Proto.Graph = graph;
        string path = Path.Combine(TempDir(), "m.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        using var model = OnnxModel.Load(path);
        var spliced = new MemoryStream();
        SplicedWriter.Write(model, spliced, minSpliced: 1);
        Assert.Equal(File.ReadAllBytes(path), spliced.ToArray());
        Assert.Equal("field 12, after raw_data", ModelProto.Parser.ParseFrom(spliced.ToArray()).Graph.Initializer[0].DocString);
    }

    [Fact]
    public void A_disposed_models_weights_are_unreadable_rather_than_dangling()
    {
        var model = OnnxModel.Load(Path.Combine(ModelsDir, "resnet_tiny.onnx"));
        var weight = model.Proto.Graph.Initializer.First(t => t.RawData.Length > 1000);
        Assert.NotEqual(0, model.RawBytes(weight)[0] | model.RawBytes(weight)[1] | model.RawBytes(weight)[2]);
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.RawBytes(weight).Length);
    }

    [Theory]
    [InlineData(100)]        // every length prefix of the stripped copy fits in 1 byte
    [InlineData(5_000)]      // graph and model: 2 or 3 bytes
    [InlineData(700_000)]    // graph and model: 4 bytes (the stripped copy above 2 MB)
    public void Zero_copy_length_prefixes_of_every_width_equal_protobufs(int constantFloats)
    {
        // What is not cut out (a Constant's value is a node attribute, not an initializer) stays in the stripped copy,
        // whose nested lengths are written into 5-byte holes and closed up.
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4, 5, 5]);
        g.Init("w", GraphBuilder.F32, [4, 4, 16, 16]);
        g.Node("Conv", ["x", "w"], "y", "conv");
        var value = new TensorProto { Name = "k", DataType = GraphBuilder.F32, Dims = { constantFloats } };
        value.FloatData.AddRange(Enumerable.Range(0, constantFloats).Select(i => (float)i));
        g.Proto.Graph.Node.Add(new NodeProto { OpType = "Constant", Name = "c", Output = { "k" }, Attribute = { new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = value } } });
        g.Output("y");
        g.Output("k");
        var bytes = g.Proto.ToByteArray();
        var zero = ZeroCopyParser.TryParse(bytes);
        Assert.NotNull(zero);
        Assert.Equal(ModelProto.Parser.ParseFrom(bytes), zero);
        Assert.Equal(bytes, zero!.ToByteArray());
    }

    [Fact]
    public void Garbage_falls_back_to_the_plain_parser()
    {
        Assert.Null(ZeroCopyParser.TryParse(new byte[] { 0x3a, 0xff, 0x7f })); // field 7, length past the end
        Assert.Null(ZeroCopyParser.TryParse(new byte[] { 0x0b, 0x00 }));       // group wire type
    }

    /// <summary>Two convs share one weight; a third BN follows the second directly (its fold reads a deferred
    /// weight); a fourth conv sits in an If branch (its folded weight is not a main-graph initializer).</summary>
    static ModelProto DeferralModel()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4, 5, 5]);
        g.Init("w", GraphBuilder.F32, [4, 4, 3, 3]);
        g.Init("w3", GraphBuilder.F32, [4, 4, 3, 3]);
        g.Node("Conv", ["x", "w"], "c1", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c1", 4, "y1");
        g.Node("Conv", ["y1", "w"], "c2", "conv2", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c2", 4, "y2");
        g.Bn("y2", 4, "y2b");
        g.Node("Conv", ["y2b", "w3"], "c3", "conv3", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c3", 4, "y3");
        g.Output("y3");
        return g.Proto;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Deferred_folds_save_the_same_bytes_as_eager_folds(bool external)
    {
        string dir = TempDir(), path = Path.Combine(dir, "m.onnx");
        File.WriteAllBytes(path, DeferralModel().ToByteArray());
        var save = new SaveOptions { ExternalData = external ? ExternalDataMode.All : ExternalDataMode.Keep, ExternalThreshold = 16 };
        using var eager = OnnxModel.Load(path);
        Folding.Fold(eager);
        using var deferred = OnnxModel.Load(path);
        Folding.Fold(deferred, new PipelineOptions { DeferWeightArithmetic = true });
        Assert.Contains(deferred.Proto.Graph.Initializer, deferred.IsDeferred);
        Assert.DoesNotContain(eager.Proto.Graph.Initializer, eager.IsDeferred);
        string a = Path.Combine(dir, "eager", "m.onnx"), b = Path.Combine(dir, "deferred", "m.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(a)!);
        Directory.CreateDirectory(Path.GetDirectoryName(b)!);
        ModelWriter.Save(eager, a, save);
        ModelWriter.Save(deferred, b, save);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        if (external) Assert.Equal(File.ReadAllBytes(a + ".data"), File.ReadAllBytes(b + ".data"));
        else
        {
            // A stream that is not a file is written in order, one piece after another: the same bytes.
            var inOrder = new MemoryStream();
            ModelWriter.Write(deferred, inOrder);
            Assert.Equal(File.ReadAllBytes(b), inOrder.ToArray());
        }
        Assert.Equal(0, Count(OnnxModel.Load(b), "BatchNormalization"));
        AssertEquivalent(OnnxModel.Load(path), OnnxModel.Load(b));
        // Reading a deferred tensor computes it, once, to the same bytes.
        var t = deferred.Proto.Graph.Initializer.First(deferred.IsDeferred);
        var bytes = deferred.RawBytes(t).ToArray();
        Assert.False(deferred.IsDeferred(t));
        Assert.Equal(eager.RawBytes(eager.Proto.Graph.Initializer.Single(e => e.Name == t.Name)).ToArray(), bytes);
    }

    /// <summary>Weights of 2 MB (float) and 1 MB (float16) after a small one: the writer's 1 MB windows of the file
    /// end inside deferred folds at offsets that are no multiple of the window from the tensor's start; windows are
    /// filled from several pieces.</summary>
    [Theory]
    [InlineData(GraphBuilder.F32)]
    [InlineData(GraphBuilder.F16)]
    public void Deferred_folds_split_across_write_windows_save_the_same_bytes_as_protobuf(int type)
    {
        var g = new GraphBuilder(15);
        g.Input("x", type, [1, 64, 11, 11]);
        g.Init("odd", type, [11]);
        string x = "x";
        for (int i = 0; i < 3; i++)
        {
            g.Init($"w{i}", type, [64, 64, 11, 11], -0.02, 0.02);
            g.Node("Conv", [x, $"w{i}"], $"c{i}", $"conv{i}", ("pads", new long[] { 5, 5, 5, 5 }));
            g.Bn($"c{i}", 64, $"y{i}", type);
            x = $"y{i}";
        }
        g.Node("Add", [x, "odd"], "z", "add");
        g.Output("z", type);
        string dir = TempDir(), path = Path.Combine(dir, "m.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        using var eager = OnnxModel.Load(path);
        Folding.Fold(eager);
        using var deferred = OnnxModel.Load(path);
        Folding.Fold(deferred, new PipelineOptions { DeferWeightArithmetic = true });
        Assert.Equal(3, deferred.Proto.Graph.Initializer.Count(deferred.IsDeferred));
        string b = Path.Combine(dir, "deferred.onnx");
        ModelWriter.Save(deferred, b, new SaveOptions());
        Assert.True(new FileInfo(b).Length > 2 * FileBytes.Chunk);
        Assert.Equal(eager.Proto.ToByteArray(), File.ReadAllBytes(b));
        Assert.Equal(0, Count(OnnxModel.Load(b), "BatchNormalization"));
        AssertEquivalent(OnnxModel.Load(path), OnnxModel.Load(b));
    }

    [Fact]
    public void A_deferred_fold_inside_a_subgraph_is_computed_before_saving()
    {
        string dir = TempDir(), path = Path.Combine(dir, "m.onnx");
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 3, 5, 5]);
        g.Input("cond", 9, []);
        g.Init("w", GraphBuilder.F32, [4, 3, 3, 3]);
        GraphProto Branch(string tag)
        {
            var b = g.Body(tag);
            b.Node("Conv", ["x", "w"], tag + "_c", tag + "_conv");
            b.Bn(tag + "_c", 4, tag + "_y", name: tag + "_bn");
            b.Output(tag + "_y", GraphBuilder.F32, null);
            return b.Graph;
        }
        g.Node("If", ["cond"], "y", "if", ("then_branch", Branch("then")), ("else_branch", Branch("else")));
        g.Output("y");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        var eagerPath = Path.Combine(dir, "eager.onnx");
        using (var eager = OnnxModel.Load(path)) { Folding.Fold(eager); ModelWriter.Save(eager, eagerPath); }
        var deferredPath = Path.Combine(dir, "deferred.onnx");
        var r = Folding.FoldFile(path, deferredPath);
        Assert.Contains(r.Log.Decisions, d => d.Outcome == Outcome.Folded);
        Assert.Equal(File.ReadAllBytes(eagerPath), File.ReadAllBytes(deferredPath));
        AssertEquivalent(OnnxModel.Load(path), OnnxModel.Load(deferredPath));
    }
}

public class CorruptInputTests
{
    /// <summary>Random byte damage to a real model: loading and folding either work or fail as invalid input (exit 3),
    /// never as an internal error.</summary>
    [Theory]
    [InlineData("mlp_bn1d.onnx", 5)]
    [InlineData("decoder_convtranspose.onnx", 6)]
    [InlineData("groupnorm_op13.onnx", 7)]
    [InlineData("layernorm_op13.onnx", 8)]
    [InlineData("resnet_tiny_constants.onnx", 9)]
    public void Damaged_models_fail_as_invalid_input_never_as_internal_errors(string name, int seed)
    {
        var original = File.ReadAllBytes(Path.Combine(ModelsDir, name));
        var rng = new Random(seed);
        string dir = TempDir();
        var surprises = new List<string>();
        for (int trial = 0; trial < int.Parse(Environment.GetEnvironmentVariable("NORMFOLD_FUZZ_TRIALS") ?? "300"); trial++)
        {
            var bytes = (byte[])original.Clone();
            int flips = 1 + rng.Next(4);
            for (int k = 0; k < flips; k++) bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
            string path = Path.Combine(dir, $"d{trial}.onnx");
            File.WriteAllBytes(path, bytes);
            try
            {
                using var model = OnnxModel.Load(path);
                Folding.Fold(model, new PipelineOptions { KeepStandaloneBatchNorm = trial % 2 == 0, SwapGroupNorm = trial % 3 == 0, SwapLayerNorm = trial % 3 == 1, TargetOpset = 21, DeferWeightArithmetic = trial % 4 < 2 });
                ModelWriter.Save(model, Path.Combine(dir, $"o{trial}.onnx"));
            }
            catch (Exception e) when (NormFold.Cli.Cli.IsInputError(e)) { }
            catch (Exception e) { surprises.Add($"trial {trial}: {e.GetType().Name}: {e.Message} {e.StackTrace?.Split('\n')[0]}"); }
        }
        Assert.True(surprises.Count == 0, string.Join("\n", surprises.Take(10)));
    }
}
