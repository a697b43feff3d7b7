namespace NormFold.Cli;

public static class ExitCodes
{
    public const int Success = 0;
    public const int InternalError = 1;
    public const int CheckFailed = 2;
    public const int InvalidInput = 3;
}

/// <summary>Bad arguments: printed as one line, exit code 3.</summary>
public sealed class UsageException(string message) : Exception(message);
