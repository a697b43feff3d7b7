using System.Runtime.InteropServices;
using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Rewriting;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Onnx;

/// <summary>Weights stored as packed float_data / double_data are views of the mapped file, like raw_data, and are
/// written back as the field they were: the same bytes as a plain protobuf parse and save.</summary>
public class TypedDataViewTests
{
    /// <summary>The tensor's elements moved from raw_data into float_data or double_data.</summary>
    static void ToTyped(TensorProto t)
    {
        var values = TensorData.ReadDoubles(t, t.RawData.Span);
        t.ClearRawData();
        if (t.DataType == GraphBuilder.F32) t.FloatData.AddRange(values.Select(v => (float)v));
        else t.DoubleData.AddRange(values);
    }

    /// <summary>Conv(w1, 590 KB) → BN → Relu → Conv(w2, 2.4 MB, no BN) → Conv(w3) → BN, every weight in float_data;
    /// w2 also carries fields after float_data (doc_string, metadata) and an unknown field.</summary>
    static ModelProto FloatModel()
    {
        var g = new GraphBuilder(15, seed: 3);
        g.Input("x", GraphBuilder.F32, [1, 64, 6, 6]);
        g.Init("w1", GraphBuilder.F32, [256, 64, 3, 3], -0.05, 0.05);
        g.Init("b1", GraphBuilder.F32, [256]); // 1 KB: left to protobuf
        g.Node("Conv", ["x", "w1", "b1"], "c1", "conv1", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Bn("c1", 256, "y1", name: "bn1");
        g.Node("Relu", ["y1"], "r1", "relu1");
        g.Init("w2", GraphBuilder.F32, [256, 256, 3, 3], -0.02, 0.02);
        g.Node("Conv", ["r1", "w2"], "c2", "conv2", ("pads", new long[] { 1, 1, 1, 1 }));
        g.Init("w3", GraphBuilder.F32, [128, 256, 1, 1], -0.1, 0.1);
        g.Node("Conv", ["c2", "w3"], "c3", "conv3");
        g.Bn("c3", 128, "y3", name: "bn3");
        g.Output("y3");
        foreach (var t in g.Proto.Graph.Initializer.Where(t => t.Name.StartsWith('w') || t.Name == "b1")) ToTyped(t);
        var w2 = g.Proto.Graph.Initializer.Single(t => t.Name == "w2");
        w2.DocString = "field 12, after float_data";
        w2.MetadataProps.Add(new StringStringEntryProto { Key = "k", Value = "v" });
        int i = g.Proto.Graph.Initializer.IndexOf(w2);
        g.Proto.Graph.Initializer[i] = TensorProto.Parser.ParseFrom([.. w2.ToByteArray(), 0x98, 0x06, 0x2a]); // field 99 = 42
        return g.Proto;
    }

    /// <summary>MatMul(x, B [512, 256] double_data) → BN, then Add(c [256] double_data, 2 KB: left to protobuf)
    /// and MatMul(B2 [256, 64], double_data, no BN).</summary>
    static ModelProto DoubleModel()
    {
        var g = new GraphBuilder(15, seed: 4);
        g.Input("x", GraphBuilder.F64, [2, 512]);
        g.Init("B", GraphBuilder.F64, [512, 256], -0.1, 0.1);
        g.Node("MatMul", ["x", "B"], "m", "matmul");
        g.Bn("m", 256, "y", paramType: GraphBuilder.F64, name: "bn");
        g.Init("c", GraphBuilder.F64, [256]);
        g.Node("Add", ["y", "c"], "a", "add");
        g.Init("B2", GraphBuilder.F64, [256, 64], -0.1, 0.1);
        g.Node("MatMul", ["a", "B2"], "z", "matmul2");
        g.Output("z", GraphBuilder.F64);
        foreach (var t in g.Proto.Graph.Initializer.Where(t => t.Name is "B" or "c" or "B2")) ToTyped(t);
        return g.Proto;
    }

    public static TheoryData<string> Models => new() { "float", "double" };

    internal static string Write(string which)
    {
        string path = Path.Combine(TempDir(), which + ".onnx");
        File.WriteAllBytes(path, (which == "float" ? FloatModel() : DoubleModel()).ToByteArray());
        return path;
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Large_float_and_double_data_weights_are_views_of_the_file_and_save_byte_for_byte(string which)
    {
        string path = Write(which);
        using var model = OnnxModel.Load(path);
        foreach (var t in model.Proto.Graph.Initializer)
        {
            int typedBytes = t.FloatData.Count * 4 + t.DoubleData.Count * 8;
            if (t.Name is "w1" or "w2" or "w3" or "B" or "B2")
            {
                // No copy: the elements are the file's mapped bytes, seen as raw_data.
                Assert.Equal(which == "float" ? 4 : 10, model.TypedViewField(t));
                Assert.Equal(0, typedBytes);
                Assert.True(MemoryMarshal.TryGetMemoryManager<byte, System.Buffers.MemoryManager<byte>>(model.RawMemory(t), out _));
                Assert.False(model.HasRawBytes(t)); // saved inline as it was, whatever the external-data options
            }
            else if (t.Name is "b1" or "c")
            {
                Assert.Null(model.TypedViewField(t)); // small: parsed (copied) by protobuf, as before
                Assert.True(typedBytes > 0);
            }
        }
        var bytes = File.ReadAllBytes(path);
        var written = new MemoryStream();
        SplicedWriter.Write(model, written);
        Assert.Equal(bytes, written.ToArray());
        written.SetLength(0);
        ModelWriter.Write(model, written); // the public form (what the OnnxSharp adapter hands OnnxSharp)
        Assert.Equal(bytes, written.ToArray());
        string output = Path.Combine(Path.GetDirectoryName(path)!, "copy.onnx");
        ModelWriter.Save(model, output);
        Assert.Equal(bytes, File.ReadAllBytes(output));
        // In memory, and through a clone (what the checker hands ORT), the values are the same as a plain parse's.
        var plain = new OnnxModel(ModelProto.Parser.ParseFrom(bytes));
        foreach (var t in model.Proto.Graph.Initializer)
        {
            var p = plain.Proto.Graph.Initializer.Single(x => x.Name == t.Name);
            Assert.Equal(plain.ReadDoubles(p), model.ReadDoubles(t));
        }
        var clone = new OnnxModel(ModelProto.Parser.ParseFrom(model.Proto.Clone().ToByteArray()));
        Assert.Equal(plain.ReadDoubles(plain.Proto.Graph.Initializer[0]), clone.ReadDoubles(clone.Proto.Graph.Initializer[0]));
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Folding_views_writes_the_same_bytes_as_folding_a_plain_parse(string which)
    {
        string path = Write(which), dir = Path.GetDirectoryName(path)!;
        // Before: protobuf's own parse (float_data copied into the message), folded eagerly.
        string before = Path.Combine(dir, "before.onnx");
        using (var plain = new OnnxModel(ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)), path))
        {
            Folding.Fold(plain);
            ModelWriter.Save(plain, before);
        }
        // Views, folded eagerly and deferred (computed while saving).
        string eager = Path.Combine(dir, "eager.onnx"), deferred = Path.Combine(dir, "deferred.onnx");
        using (var model = OnnxModel.Load(path))
        {
            Folding.Fold(model);
            ModelWriter.Save(model, eager);
        }
        var result = Folding.FoldFile(path, deferred);
        Assert.Equal(which == "float" ? 2 : 1, result.Log.Decisions.Count(d => d.Outcome == Outcome.Folded));
        Assert.Equal(File.ReadAllBytes(before), File.ReadAllBytes(eager));
        Assert.Equal(File.ReadAllBytes(before), File.ReadAllBytes(deferred));
        // The untouched weight is still float_data / double_data in the output; the fold results are raw_data.
        var output = ModelProto.Parser.ParseFrom(File.ReadAllBytes(deferred));
        var kept = output.Graph.Initializer.Single(t => t.Name == (which == "float" ? "w2" : "B2"));
        Assert.True(kept.FloatData.Count + kept.DoubleData.Count > 0);
        Assert.False(kept.HasRawData);
        using var original = OnnxModel.Load(path);
        using var folded = OnnxModel.Load(deferred);
        AssertFoldPasses(original, folded, result);
    }

    [Fact]
    public void A_view_replaced_in_memory_is_saved_as_raw_data()
    {
        string path = Write("float");
        using var model = OnnxModel.Load(path);
        var w2 = model.Proto.Graph.Initializer.Single(t => t.Name == "w2");
        var bytes = model.RawBytes(w2).ToArray();
        bytes[0] ^= 1;
        w2.RawData = ByteString.CopyFrom(bytes);
        Assert.Null(model.TypedViewField(w2));
        string output = Path.Combine(Path.GetDirectoryName(path)!, "changed.onnx");
        ModelWriter.Save(model, output);
        var saved = ModelProto.Parser.ParseFrom(File.ReadAllBytes(output)).Graph.Initializer.Single(t => t.Name == "w2");
        Assert.Empty(saved.FloatData);
        Assert.Equal(bytes, saved.RawData.ToByteArray());
    }

    [Fact]
    public void Float16_in_int32_data_and_float_data_beside_raw_data_are_left_to_protobuf()
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F16, [1, 16, 4, 4]);
        g.Init("w", GraphBuilder.F16, [64, 16, 3, 3]);
        g.Node("Conv", ["x", "w"], "y", "conv");
        g.Output("y", GraphBuilder.F16);
        var w = g.Proto.Graph.Initializer.Single();
        var halves = MemoryMarshal.Cast<byte, ushort>(w.RawData.Span).ToArray();
        w.ClearRawData();
        w.Int32Data.AddRange(halves.Select(h => (int)h)); // float16 one per int32 entry: no byte view possible
        string path = Path.Combine(TempDir(), "m.onnx");
        File.WriteAllBytes(path, g.Proto.ToByteArray());
        using (var model = OnnxModel.Load(path))
        {
            var t = model.Proto.Graph.Initializer.Single();
            Assert.Null(model.TypedViewField(t));
            Assert.Equal(halves.Length, t.Int32Data.Count);
        }
        // float_data beside raw_data (invalid, but protobuf keeps both): the zero-copy parse steps aside.
        var f = new TensorProto { Name = "f", DataType = GraphBuilder.F32, Dims = { 2048 }, RawData = ByteString.CopyFrom(new byte[8192]) };
        f.FloatData.AddRange(new float[2048]);
        var m = new ModelProto { Graph = new GraphProto { Initializer = { f } } };
        Assert.Null(ZeroCopyParser.TryParse(m.ToByteArray()));
        // float_data on a float16 tensor: not the elements protobuf would read; steps aside too.
        f.ClearRawData();
        f.DataType = GraphBuilder.F16;
        Assert.Null(ZeroCopyParser.TryParse(m.ToByteArray()));
        f.DataType = GraphBuilder.F32;
        Assert.NotNull(ZeroCopyParser.TryParse(m.ToByteArray(), out var typed));
        Assert.Equal(4, Assert.Single(typed).Field);
    }
}
