using Google.Protobuf;
using NormFold.Onnx;
using NormFold.Rewriting;
using OnnxSharpModel = global::Onnx.ModelProto;

namespace NormFold.OnnxSharp;

/// <summary>
/// NormFold for an OnnxSharp <c>Onnx.ModelProto</c>, through bytes: OnnxSharp serialises its model, NormFold parses
/// it with its own schema (OnnxSharp's proto3 classes drop field presence, so NormFold never rewrites through
/// them), folds, serialises, and OnnxSharp parses the result.
/// </summary>
public static class OnnxSharpModels
{
    /// <summary>Folds a copy of <paramref name="model"/>; the argument is not changed.</summary>
    /// <param name="externalDataDirectory">Where tensors stored as external data are read from (the model file's
    /// folder); they stay external in the result, pointing at the same files.</param>
    public static (OnnxSharpModel Model, FoldResult Result) Fold(OnnxSharpModel model, PipelineOptions? options = null,
        string? externalDataDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var ours = ToNormFold(model, externalDataDirectory);
        var result = Folding.Fold(ours, (options ?? new PipelineOptions()) with { DeferWeightArithmetic = false });
        return (ToOnnxSharp(ours), result);
    }

    /// <summary>An OnnxSharp model as NormFold's <see cref="OnnxModel"/> (a copy).</summary>
    /// <param name="externalDataDirectory">The folder external data locations are relative to.</param>
    public static OnnxModel ToNormFold(OnnxSharpModel model, string? externalDataDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var proto = NormFold.Onnx.Proto.ModelProto.Parser.ParseFrom(model.ToByteArray());
        // OnnxModel resolves external data beside its source path; the file itself is never read.
        return new OnnxModel(proto, externalDataDirectory is null ? null : Path.Combine(Path.GetFullPath(externalDataDirectory), "model.onnx"));
    }

    /// <summary>NormFold's model as an OnnxSharp model (a copy, independent of <paramref name="model"/>): the bytes
    /// <see cref="ModelWriter.Save"/> would write, so folded weights are computed (deferred ones too) and weights
    /// loaded from float_data / double_data stay in those fields (NormFold shows them as raw_data while it holds them);
    /// fold results are raw_data. Tensors stored as external data stay external, naming the same files.</summary>
    public static OnnxSharpModel ToOnnxSharp(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var bytes = new MemoryStream();
        ModelWriter.Write(model, bytes);
        return OnnxSharpModel.Parser.ParseFrom(bytes.GetBuffer().AsSpan(0, (int)bytes.Length));
    }
}
