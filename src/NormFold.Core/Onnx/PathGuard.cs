namespace NormFold.Onnx;

/// <summary>
/// What a path names on disk, for deciding whether a file NormFold writes would replace one it reads. Every write is
/// "temporary file, then rename over the target", which never changes an existing file's bytes: the only way to lose an
/// input is to rename over its own directory entry. So paths are compared after making them absolute and following
/// symbolic links to the file they finally name.
/// </summary>
internal static class PathGuard
{
    /// <summary>The absolute path of the file <paramref name="path"/> finally names: every symbolic link followed, in the
    /// folders on the way as in the last name (realpath(3)); for a path that does not exist yet, its folder's real path
    /// and its name.</summary>
    public static string Resolve(string path) => Resolve(Path.GetFullPath(path), depth: 0);

    static string Resolve(string full, int depth)
    {
        if (full.Length > 1) full = full.TrimEnd(Path.DirectorySeparatorChar);
        if (RealPath(full) is { } real) return real;
        if (depth > 40) return full; // a loop of links
        try
        {
            if (new FileInfo(full).LinkTarget is { } target) // a dangling link: where it points
                return Resolve(Path.GetFullPath(target, Path.GetDirectoryName(full)!), depth + 1);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        string? dir = Path.GetDirectoryName(full);
        return dir is null ? full : Path.Combine(Resolve(dir, depth + 1), Path.GetFileName(full));
    }

    /// <summary>Whether <paramref name="path"/> is <paramref name="folder"/> or lies anywhere below it (both resolved).</summary>
    public static bool IsWithin(string path, string folder)
    {
        string p = Resolve(path), f = Resolve(folder);
        return p == f || p.StartsWith(f.EndsWith(Path.DirectorySeparatorChar) ? f : f + Path.DirectorySeparatorChar, StringComparison.Ordinal);
    }

    static unsafe string? RealPath(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path) || Directory.Exists(path) ? path : null;
        byte* buffer = stackalloc byte[4097]; // PATH_MAX + 1
        return RealPathNative(path, buffer) == null ? null : System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)buffer);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath")]
    static extern unsafe byte* RealPathNative([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, byte* resolved);

    public static bool Same(string a, string b) => Resolve(a) == Resolve(b);

    /// <summary>Refuses an existing target that is not a regular file (a device, a pipe, a folder): renaming over it
    /// would replace it rather than write into it.</summary>
    public static void CheckRegularOrAbsent(string label, string path)
    {
        if (Directory.Exists(path)) throw new InvalidModelException($"{label}: is a folder; give a file name");
        if (IsSpecial(path))
            throw new InvalidModelException($"{label}: is not a regular file (a device or a pipe?); NormFold writes a new file and renames it into place, which would replace it");
    }

    /// <summary>Whether the path names an existing device, pipe or socket (after following links).</summary>
    public static bool IsSpecial(string path) => File.Exists(path) && Kind(path) is not (FileKind.Regular or FileKind.Unknown); // stat follows every link, /proc's too

    internal enum FileKind { Unknown, Missing, Regular, Folder, Fifo, CharacterDevice, BlockDevice, Socket }

    /// <summary>What the path finally names, from stat(2) without opening it (opening a FIFO blocks until a writer
    /// comes). <see cref="FileKind.Unknown"/> where stat cannot be asked (NormFold's stat layout is Linux x64's).</summary>
    internal static unsafe FileKind Kind(string path)
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            return File.Exists(path) ? FileKind.Unknown : Directory.Exists(path) ? FileKind.Folder : FileKind.Missing;
        if (path.Contains('\0')) return FileKind.Missing;
        byte* buffer = stackalloc byte[256]; // struct stat is 144 bytes on x86-64; st_mode at offset 24
        if (Stat(path, buffer) != 0) return FileKind.Missing; // gone, unreadable, or a dangling link
        return (*(uint*)(buffer + 24) & 0xF000) switch
        {
            0x8000 => FileKind.Regular,
            0x4000 => FileKind.Folder,
            0x1000 => FileKind.Fifo,
            0x2000 => FileKind.CharacterDevice,
            0x6000 => FileKind.BlockDevice,
            0xC000 => FileKind.Socket,
            _ => FileKind.Unknown,
        };
    }

    /// <summary>"a FIFO (named pipe)", … for a path that exists and is not a regular file; null otherwise.</summary>
    internal static string? NotRegular(FileKind kind) => kind switch
    {
        FileKind.Folder => "a folder",
        FileKind.Fifo => "a FIFO (named pipe)",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Socket => "a socket",
        _ => null,
    };

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "stat", SetLastError = true)]
    static extern unsafe int Stat([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, byte* buffer);

    /// <summary>The length of the file a path finally names (a symbolic link's own size is not the file's).</summary>
    public static long Length(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return RandomAccess.GetLength(handle);
    }
}
