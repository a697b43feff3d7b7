namespace NormFold;

/// <summary>
/// The only exceptions that mean "the input is wrong" (the CLI's exit 3). Each message names where (file, graph, node,
/// tensor or path) and what. Any other exception escaping NormFold is a bug in NormFold. Messages never name CLI flags.
/// </summary>
public abstract class NormFoldException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The model (or one of its files) is not valid input. The message names the file, node or tensor.</summary>
public sealed class InvalidModelException(string message, Exception? inner = null) : NormFoldException(message, inner);

/// <summary>The options, or the data given with them (input tensors, shapes, tolerances), cannot be used.</summary>
public sealed class InvalidUsageException(string message, Exception? inner = null) : NormFoldException(message, inner);

/// <summary>A file or folder cannot be read or written. <see cref="Path"/> names it.</summary>
public sealed class NormFoldIOException(string path, string problem, Exception? inner = null)
    : NormFoldException($"{path}: {problem}", inner)
{
    public string Path { get; } = path;

    /// <summary>Runs <paramref name="body"/>, turning the operating system's I/O errors into one naming <paramref name="path"/>.</summary>
    public static T Guard<T>(string path, Func<T> body)
    {
        try { return body(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new NormFoldIOException(path, Describe(e), e);
        }
    }

    public static void Guard(string path, Action body) => Guard(path, () => { body(); return 0; });

    /// <summary>The OS error without the path .NET often repeats in it.</summary>
    public static string Describe(Exception e) => e switch
    {
        FileNotFoundException => "file not found",
        DirectoryNotFoundException => "folder not found",
        UnauthorizedAccessException => "permission denied",
        PathTooLongException => "path too long",
        _ => e.Message,
    };
}
