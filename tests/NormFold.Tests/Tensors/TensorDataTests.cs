using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Tests.Tensors;

public class TensorDataTests
{
    /// <summary>An int64 (7) or int32 (6) tensor of dims [4] holding <paramref name="values"/> in raw_data or the typed field.</summary>
    static TensorProto Shape4(int type, bool raw, long[] values)
    {
        var t = new TensorProto { Name = "gshape", DataType = type, Dims = { 4 } };
        if (raw) t.RawData = ByteString.CopyFrom(type == 7 ? values.SelectMany(BitConverter.GetBytes).ToArray() : values.SelectMany(v => BitConverter.GetBytes((int)v)).ToArray());
        else if (type == 7) t.Int64Data.AddRange(values);
        else t.Int32Data.AddRange(values.Select(v => (int)v));
        return t;
    }

    /// <summary>Campaign groupnorm:7001725: a Reshape shape of dims [4] holding 2 int64s was read past its end
    /// (ArgumentOutOfRange, exit 1). Integer data that does not match the dims is named, like float data.</summary>
    [Theory]
    [InlineData(7, false, 2)]
    [InlineData(7, false, 6)]
    [InlineData(7, true, 2)]
    [InlineData(6, false, 3)]
    [InlineData(6, true, 5)]
    public void Integer_data_that_does_not_match_the_dims_is_named(int type, bool raw, int held)
    {
        var t = Shape4(type, raw, Enumerable.Range(0, held).Select(i => (long)i).ToArray());
        var e = Assert.Throws<FormatException>(() => TensorData.ReadInt64s(t, t.RawData.Span));
        Assert.Contains("'gshape'", e.Message);
    }

    [Theory]
    [InlineData(7, false)]
    [InlineData(7, true)]
    [InlineData(6, false)]
    [InlineData(6, true)]
    public void Integer_data_that_matches_the_dims_is_read(int type, bool raw)
    {
        long[] values = [0, 2, -1, 7];
        var t = Shape4(type, raw, values);
        Assert.Equal(values, TensorData.ReadInt64s(t, t.RawData.Span));
    }
}
