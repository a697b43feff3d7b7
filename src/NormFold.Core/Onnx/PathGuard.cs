namespace NormFold.Onnx;

/// <summary>
/// What a path names on disk, for deciding whether a file NormFold writes would replace one it reads. Every write is
/// "temporary file, then rename over the target", which never changes an existing file's bytes: the only way to lose an
/// input is to rename over its own directory entry. So paths are compared after making them absolute and following
/// symbolic links to the file they finally name.
/// </summary>
public static class PathGuard
{
    /// <summary>The absolute path of the file <paramref name="path"/> finally names (symbolic links followed).</summary>
    public static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            var info = new FileInfo(full);
            if (info.LinkTarget != null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
                return Path.GetFullPath(target.FullName);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return full;
    }

    public static bool Same(string a, string b) => Resolve(a) == Resolve(b);

    /// <summary>Refuses an existing target that is not a regular file (a device, a pipe, a folder): renaming over it
    /// would replace it rather than write into it.</summary>
    public static void CheckRegularOrAbsent(string label, string path)
    {
        if (Directory.Exists(path)) throw new ModelFormatException($"{label}: is a folder; give a file name");
        if (IsSpecial(path))
            throw new ModelFormatException($"{label}: is not a regular file (a device or a pipe?); NormFold writes a new file and renames it into place, which would replace it");
    }

    /// <summary>Whether the path names an existing device, pipe or socket (after following links).</summary>
    public static bool IsSpecial(string path) => File.Exists(path) && !IsRegularFile(path); // stat follows every link, /proc's too

    /// <summary>stat(2)'s file type (Linux x64, where NormFold is built); true where it cannot be asked.</summary>
    static unsafe bool IsRegularFile(string path)
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            return true;
        byte* buffer = stackalloc byte[256]; // struct stat is 144 bytes on x86-64; st_mode at offset 24
        if (Stat(path, buffer) != 0) return true; // gone or unreadable: the write will say why
        uint mode = *(uint*)(buffer + 24);
        return (mode & 0xF000) == 0x8000; // S_IFREG
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    static extern unsafe int Stat([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, byte* buffer);

    /// <summary>The length of the file a path finally names (a symbolic link's own size is not the file's).</summary>
    public static long Length(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return RandomAccess.GetLength(handle);
    }
}
