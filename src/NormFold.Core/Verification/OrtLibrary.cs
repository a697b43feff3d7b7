using System.Runtime.InteropServices;

namespace NormFold.Verification;

/// <summary>
/// ONNX Runtime's native library, loaded on first use (folding alone never loads it). A missing or unloadable
/// library is one clear error naming the library and where it was looked for, not a type initializer's exception.
/// </summary>
internal static class OrtLibrary
{
    /// <summary>The library's file name on this platform.</summary>
    public static string FileName =>
        OperatingSystem.IsWindows() ? "onnxruntime.dll" : OperatingSystem.IsMacOS() ? "libonnxruntime.dylib" : "libonnxruntime.so";

    /// <summary>Whether <paramref name="e"/> (under the type initializers that wrap it) is the loader failing.</summary>
    public static bool IsMissing(Exception e) => Cause(e) is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException;

    /// <summary>The one-line error for <paramref name="e"/> (see <see cref="IsMissing"/>).</summary>
    public static DllNotFoundException Missing(Exception e) => new(
        $"ONNX Runtime's native library {FileName} ({RuntimeInformation.RuntimeIdentifier}) is missing or cannot be " +
        $"loaded: it is looked for in {AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)} and on the " +
        "system's library path; running models in ONNX Runtime needs it, folding does not", e);

    static Exception Cause(Exception e)
    {
        while (e is TypeInitializationException { InnerException: { } inner }) e = inner;
        return e;
    }
}
