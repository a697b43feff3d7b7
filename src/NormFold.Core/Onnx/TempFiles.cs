using System.Collections.Concurrent;

namespace NormFold.Onnx;

/// <summary>
/// Temporary files and folders being written, until they are renamed into place. The library registers no signal
/// handler (signals belong to the host): a host that wants an interrupted run to leave nothing behind calls
/// <see cref="DeleteAll"/> from its own (the CLI does, on Ctrl-C, SIGTERM and SIGHUP; SIGKILL cannot be caught).
/// </summary>
public static class TempFiles
{
    static readonly ConcurrentDictionary<string, bool> Live = new(StringComparer.Ordinal);

    internal static void Track(string path, bool folder = false) => Live[path] = folder;

    internal static void Untrack(string path) => Live.TryRemove(path, out _);

    /// <summary>Deletes every temporary file and folder still being written (best effort, never throws).</summary>
    public static void DeleteAll()
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
