using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace NormFold.Onnx;

/// <summary>
/// Temporary files and folders being written: deleted if the process is stopped (Ctrl-C, SIGTERM, SIGHUP) before
/// they are renamed into place, so an interrupted run leaves nothing behind either. (SIGKILL cannot be caught.)
/// </summary>
public static class TempFiles
{
    static readonly ConcurrentDictionary<string, bool> Live = new(StringComparer.Ordinal);
    static PosixSignalRegistration[]? _handlers;

    internal static void Track(string path, bool folder = false)
    {
        if (_handlers is null)
            lock (Live)
                _handlers ??= [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP }
                    .Select(s => PosixSignalRegistration.Create(s, _ => DeleteAll()))]; // then the default action: exit
        Live[path] = folder;
    }

    internal static void Untrack(string path) => Live.TryRemove(path, out _);

    static void DeleteAll()
    {
        foreach (var (path, folder) in Live)
        {
            try
            {
                if (folder && Directory.Exists(path)) Directory.Delete(path, recursive: true);
                else if (File.Exists(path)) File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }
}
