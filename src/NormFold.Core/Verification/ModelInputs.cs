using NormFold.Onnx;

namespace NormFold.Verification;

internal static class ModelInputs
{
    /// <summary>The model's declared inputs (graph inputs that are not initializers): type, dims (-1 dynamic), symbols.</summary>
    public static List<TensorSignature> Of(OnnxModel model)
    {
        var initializers = model.Proto.Graph.Initializer.Select(t => t.Name).ToHashSet();
        return model.Proto.Graph.Input.Where(v => !initializers.Contains(v.Name)).Select(v =>
        {
            var dims = v.Type?.TensorType?.Shape?.Dim;
            return new TensorSignature(v.Name, v.Type?.TensorType?.ElemType ?? 0,
                dims?.Select(d => d.HasDimValue ? d.DimValue : -1L).ToArray() ?? [],
                dims?.Select(d => d.HasDimParam ? d.DimParam : "").ToArray() ?? [],
                UnknownRank: v.Type?.TensorType is { Shape: null }); // no shape: any rank (an empty shape is rank 0)
        }).ToList();
    }
}
