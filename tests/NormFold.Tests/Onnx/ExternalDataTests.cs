using System.Diagnostics;
using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Tests.Builders;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Onnx;

/// <summary>External data is read only from regular files inside the model's real folder, in the range the tensor's
/// size says; anything else is refused in one line naming the model, the tensor and the problem.</summary>
public class ExternalDataTests
{
    /// <summary>A model whose 4×4 float MatMul weight 'w' is external data with the given entries, in a fresh folder.</summary>
    internal static (string Dir, string Model) ModelWithExternal(params (string Key, string Value)[] entries)
    {
        var g = new GraphBuilder(15);
        g.Input("x", GraphBuilder.F32, [1, 4]);
        var t = new TensorProto { Name = "w", DataType = 1, Dims = { 4, 4 }, DataLocation = TensorProto.Types.DataLocation.External };
        foreach (var (k, v) in entries) t.ExternalData.Add(new StringStringEntryProto { Key = k, Value = v });
        g.Graph.Initializer.Add(t);
        g.Node("MatMul", ["x", "w"], "y");
        g.Output("y");
        string dir = TempDir();
        string model = Path.Combine(dir, "m.onnx");
        File.WriteAllBytes(model, g.Proto.ToByteArray());
        return (dir, model);
    }

    static string Refused(string model)
    {
        var e = Assert.Throws<InvalidModelException>(() => { using var m = OnnxModel.Load(model); m.ReadDoubles(m.Proto.Graph.Initializer[0]); });
        Assert.Single(e.Message.Split('\n'));
        Assert.Contains(model, e.Message);
        Assert.Contains("'w'", e.Message);
        return e.Message;
    }

    [Fact]
    public void A_data_file_that_is_a_link_to_a_file_elsewhere_is_refused()
    {
        string outside = TempDir();
        string secret = Path.Combine(outside, "secret.bin");
        File.WriteAllBytes(secret, new byte[64]);
        var (dir, model) = ModelWithExternal(("location", "w.bin"));
        File.CreateSymbolicLink(Path.Combine(dir, "w.bin"), secret);
        Assert.Contains("outside the model's folder", Refused(model));
        // Folding it must not copy the file elsewhere into the output either.
        Assert.Throws<InvalidModelException>(() => Folding.FoldFile(model, Path.Combine(dir, "out.onnx")));
        Assert.False(File.Exists(Path.Combine(dir, "out.onnx.data")));
    }

    [Fact]
    public void A_location_through_a_linked_folder_is_refused()
    {
        string outside = TempDir();
        File.WriteAllBytes(Path.Combine(outside, "w.bin"), new byte[64]);
        var (dir, model) = ModelWithExternal(("location", "sub/w.bin"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "sub"), outside);
        Assert.Contains("outside the model's folder", Refused(model));
    }

    [Fact]
    public void A_link_that_stays_inside_the_models_folder_is_read()
    {
        var (dir, model) = ModelWithExternal(("location", "link.bin"));
        Directory.CreateDirectory(Path.Combine(dir, "data"));
        var bytes = new byte[64];
        BitConverter.GetBytes(2.5f).CopyTo(bytes, 0);
        File.WriteAllBytes(Path.Combine(dir, "data", "w.bin"), bytes);
        File.CreateSymbolicLink(Path.Combine(dir, "link.bin"), Path.Combine(dir, "data", "w.bin"));
        using var m = OnnxModel.Load(model);
        Assert.Equal(2.5, m.ReadDoubles(m.Proto.Graph.Initializer[0])[0]);
    }

    [Fact]
    public async Task A_fifo_as_data_file_is_refused_without_opening_it()
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin"));
        using (var mk = Process.Start("mkfifo", Path.Combine(dir, "w.bin"))) mk.WaitForExit();
        var load = Task.Run(() => Refused(model));
        Assert.True(await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(20))) == load, "loading hung on the FIFO");
        Assert.Contains("FIFO", await load);
    }

    [Fact]
    public void A_device_as_data_file_is_refused()
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin"));
        File.CreateSymbolicLink(Path.Combine(dir, "w.bin"), "/dev/zero");
        Assert.Matches("outside the model's folder|character device", Refused(model));
    }

    [Fact]
    public async Task A_fifo_as_model_file_is_refused_without_opening_it()
    {
        string fifo = Path.Combine(TempDir(), "m.onnx");
        using (var mk = Process.Start("mkfifo", fifo)) mk.WaitForExit();
        var load = Task.Run(() => Assert.Throws<InvalidModelException>(() => OnnxModel.Load(fifo)).Message);
        Assert.True(await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(20))) == load, "loading hung on the FIFO");
        string message = await load;
        Assert.Contains("FIFO", message);
        Assert.Contains(fifo, message);
    }

    [Fact]
    public void A_nul_in_the_location_is_named()
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin\0../../etc/passwd"));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[64]);
        Assert.Contains("NUL", Refused(model));
    }

    [Theory]
    [InlineData("99999999999999999999", "offset '99999999999999999999'")]
    [InlineData("-8", "offset '-8'")]
    [InlineData("9223372036854775807", "offset 9223372036854775807")]
    [InlineData("65", "offset 65")]
    [InlineData("8", "offset 8")]
    public void Offsets_out_of_range_or_past_the_end_name_tensor_file_and_offset(string offset, string expected)
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin"), ("offset", offset));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[64]);
        string message = Refused(model);
        Assert.Contains(expected, message);
        Assert.Contains("w.bin", message);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("32")]
    [InlineData("128")]
    public void A_length_that_is_not_the_tensors_size_is_refused(string length)
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin"), ("length", length));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[256]);
        string message = Refused(model);
        Assert.Contains($"length {length}", message);
        Assert.Contains("64 bytes", message);
    }

    [Fact]
    public void Without_a_length_the_tensor_takes_its_own_size_not_the_rest_of_the_file()
    {
        var (dir, model) = ModelWithExternal(("location", "w.bin"), ("offset", "64"));
        File.WriteAllBytes(Path.Combine(dir, "w.bin"), new byte[256]);
        using var m = OnnxModel.Load(model);
        Assert.Equal(64, m.RawBytes(m.Proto.Graph.Initializer[0]).Length);
    }
}

public class DisplayNameTests
{
    /// <summary>A model loaded from a staging file is named in messages as the user's output, not the temporary path.</summary>
    [Fact]
    public void Load_messages_name_the_display_name_not_the_staged_path()
    {
        var (_, staged) = ExternalDataTests.ModelWithExternal(("location", "missing.bin")); // stands for a staged file
        var e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(staged, "the folded model (out.onnx)"));
        Assert.StartsWith("the folded model (out.onnx): tensor 'w'", e.Message);
        Assert.DoesNotContain(staged, e.Message);
        File.WriteAllBytes(staged, []);
        e = Assert.Throws<InvalidModelException>(() => OnnxModel.Load(staged, "the folded model (out.onnx)"));
        Assert.Equal("the folded model (out.onnx): file is empty", e.Message);
        // A model built in memory is named as such.
        var bad = new GraphBuilder(15);
        bad.Input("x", GraphBuilder.F32, [1, 4]);
        bad.Input("x", GraphBuilder.F32, [1, 4]);
        e = Assert.Throws<InvalidModelException>(() => Folding.Fold(bad.Build()));
        Assert.StartsWith("<in-memory model>: graph 'main'", e.Message);
    }
}
