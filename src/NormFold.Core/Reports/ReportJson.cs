using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace NormFold.Reports;

/// <summary>Source-generated serialisation of the reports (no reflection: Native AOT safe).</summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(FoldReport))]
[JsonSerializable(typeof(CheckFileReport))]
[JsonSerializable(typeof(FolderReport))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;

internal static class ReportJson
{
    public static string Serialize<T>(T value, JsonTypeInfo<T> info) => JsonSerializer.Serialize(value, info) + "\n";
}
