using System.Runtime.InteropServices;
using NormFold.Onnx;

namespace NormFold.Cli;

/// <summary>Ctrl-C, SIGTERM, SIGHUP: delete the temporary files being written, then the default action (exit), so an
/// interrupted run leaves nothing behind. Installed by the CLI, not the library: signals are the host's.</summary>
static class Signals
{
    static PosixSignalRegistration[]? _handlers;

    public static void Install() =>
        _handlers ??= [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP }
            .Select(s => PosixSignalRegistration.Create(s, _ => TempFiles.DeleteAll()))];
}
