using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace NormFold.Verification;

/// <summary>
/// ONNX Runtime's process-wide environment, created once with a logger that drops everything: ORT's own log lines
/// (coloured, multi-line) must never reach the user's stderr; its errors reach NormFold as exceptions and are reported
/// as one line naming the model.
/// </summary>
internal static partial class OrtEnvironment
{
    static readonly object Gate = new();
    static readonly DOrtLoggingFunction Silent = (_, _, _, _, _, _) => { }; // kept alive here: ORT holds a pointer to it
    static OrtEnv? _env;

    public static OrtEnv Instance
    {
        get
        {
            try { return Create(); }
            catch (Exception e) when (OrtLibrary.IsMissing(e)) { throw OrtLibrary.Missing(e); } // one line, not a type initializer's
        }
    }

    static OrtEnv Create()
    {
        lock (Gate)
        {
            if (_env != null) return _env;
            DisableTelemetry();
            if (OrtEnv.IsCreated) _env = OrtEnv.Instance(); // someone in this process made it first
            else
            {
                var options = new EnvironmentCreationOptions
                {
                    logId = "normfold",
                    logLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
                    loggingFunction = Silent,
                };
                _env = OrtEnv.CreateInstanceWithOptions(ref options);
            }
            _env.EnvLogLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL;
            return _env;
        }
    }

    /// <summary>The variable ORT (1.29 on, Linux and macOS) reads when its environment starts.</summary>
    internal const string TelemetryVariable = "ORT_DISABLE_TELEMETRY";

    /// <summary>
    /// ORT's Linux and macOS builds send usage telemetry to Microsoft and keep a device id and an event cache
    /// (~/.cache/Microsoft/DeveloperTools/.onnxruntime: deviceid, onnxruntime.db) unless ORT_DISABLE_TELEMETRY is
    /// true when its environment starts (or a CI variable such as CI=true is set). NormFold uses no network and writes
    /// nothing outside its outputs: it sets the variable before ORT starts, unless the user set it
    /// (ORT_DISABLE_TELEMETRY=0 keeps ORT's default). ORT reads it with getenv, and on Unix .NET's
    /// Environment.SetEnvironmentVariable changes only .NET's own copy: setenv it is. Windows: ETW, no file, no upload.
    /// </summary>
    static void DisableTelemetry()
    {
        if (OperatingSystem.IsWindows() || Environment.GetEnvironmentVariable(TelemetryVariable) is not null) return;
        try { SetEnv(TelemetryVariable, "1", overwrite: 0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { } // no libc by that name: ORT's default
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    static bool _sharedArena;

    /// <summary>
    /// Registers, once per process, a CPU arena that sessions made with "session.use_env_allocators" share: the
    /// segments of a batched check run one after another, and one arena lets each reuse what the one before freed
    /// (with an arena per session each keeps its own high-water mark; with none, the C allocator keeps freed blocks
    /// fragmented, and fresh pages cost a fault each). It grows by what is asked (no doubling) and keeps its peak.
    /// </summary>
    public static void EnsureSharedArena()
    {
        var env = Instance;
        lock (Gate)
        {
            if (_sharedArena) return;
            using var memory = new OrtMemoryInfo(OrtMemoryInfo.allocatorCPU, OrtAllocatorType.ArenaAllocator, 0, OrtMemType.Default);
            using var arena = new OrtArenaCfg(0, 1, -1, -1); // no limit, kSameAsRequested, default chunk and dead bytes
            env.CreateAndRegisterAllocator(memory, arena);
            _sharedArena = true;
        }
    }

    /// <summary>ORT's exception text on one line: every line of it, whitespace collapsed.</summary>
    public static string OneLine(string message) =>
        string.Join(' ', message.Split((char[])['\n', '\r', '\t', ' '], StringSplitOptions.RemoveEmptyEntries));
}
