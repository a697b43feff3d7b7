namespace NormFold.Cli;

public static class ExitCodes
{
    public const int Success = 0;
    public const int InternalError = 1;
    public const int CheckFailed = 2;
    public const int InvalidInput = 3;
}
