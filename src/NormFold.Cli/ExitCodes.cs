namespace NormFold.Cli;

internal static class ExitCodes
{
    public const int Success = 0;
    public const int InternalError = 1;
    public const int CheckFailed = 2;
    public const int InvalidInput = 3;
    /// <summary>A gate (--require-all-folded, --max-drift, --min-cosine) failed; nothing was written.</summary>
    public const int GateFailed = 4;

    /// <summary>Every exit code, for the top-level --help.</summary>
    public const string Help = "0 success, 1 internal error, 2 equivalence check failed, 3 invalid model or arguments, 4 a gate failed (--require-all-folded, --max-drift, --min-cosine)";
}
