using NormFold.Onnx.Proto;

namespace NormFold.Graph;

/// <summary>Attribute lookups with the operator's default when absent.</summary>
internal static class Attributes
{
    public static AttributeProto? Find(NodeProto node, string name)
    {
        foreach (var a in node.Attribute) if (a.Name == name) return a;
        return null;
    }

    public static long Int(NodeProto node, string name, long defaultValue) =>
        Find(node, name) is { } a ? a.I : defaultValue;

    public static float Float(NodeProto node, string name, float defaultValue) =>
        Find(node, name) is { } a ? a.F : defaultValue;

    public static IReadOnlyList<long>? Ints(NodeProto node, string name) =>
        Find(node, name) is { } a ? a.Ints : null;

    public static void SetFloat(NodeProto node, string name, float value)
    {
        if (Find(node, name) is { } a) { a.F = value; return; }
        node.Attribute.Add(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value });
    }

    public static string Describe(NodeProto node) =>
        string.IsNullOrEmpty(node.Name) ? $"{node.OpType} (output '{node.Output.FirstOrDefault()}')" : $"{node.OpType} '{node.Name}'";

    public static bool IsDefaultDomain(NodeProto node) => node.Domain is "" or "ai.onnx";
}
