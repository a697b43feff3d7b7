using NormFold.Cli.Commands;
using NormFold.Onnx;

namespace NormFold.Cli;

/// <summary>Dispatch and the error policy: one line naming the file/node/tensor and the problem; a stack trace only with --verbose.</summary>
internal static class Cli
{
    public static IReadOnlyList<Command> Commands { get; } = [new FoldCommand(), new InspectCommand(), new CheckCommand()];

    public static int Run(string[] args, TextWriter stdout)
    {
        bool verbose = args.Contains("--verbose") || args.Contains("-v");
        if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
        {
            stdout.Write(Usage());
            return args.Length == 0 ? ExitCodes.InvalidInput : ExitCodes.Success;
        }
        if (args[0] == "--version")
        {
            stdout.WriteLine($"normfold {typeof(Folding).Assembly.GetName().Version?.ToString(3)}");
            return ExitCodes.Success;
        }
        var command = Commands.FirstOrDefault(c => c.Name == args[0]);
        if (command is null)
        {
            Console.Error.WriteLine($"normfold: unknown command '{args[0]}' (commands: {string.Join(", ", Commands.Select(c => c.Name))}; see normfold --help)");
            return ExitCodes.InvalidInput;
        }
        Signals.Install();
        try
        {
            return command.Run(args.Skip(1).ToList(), stdout);
        }
        catch (Exception e) when (IsInputError(e))
        {
            Console.Error.WriteLine($"normfold: {(e is InvalidUsageException ? "" : command.Name + ": ")}{e.Message}");
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InvalidInput;
        }
        catch (DllNotFoundException e) // ONNX Runtime's library missing: the installation, not NormFold or the input
        {
            Console.Error.WriteLine($"normfold: {command.Name}: {e.Message}");
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InternalError;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"normfold: {command.Name}: internal error: {e.Message} (run with --verbose for the stack trace, and please report it)");
            if (verbose) Console.Error.WriteLine(e);
            return ExitCodes.InternalError;
        }
    }

    /// <summary>Errors that mean the input or the arguments are wrong (exit 3), not NormFold (exit 1).</summary>
    public static bool IsInputError(Exception e) => e is NormFoldException;

    static string Usage() =>
        Printing.Wrap("NormFold — fold BatchNormalization into the weights of ONNX models, say why for every BN left, and check the result.", Command.HelpWidth, "") + "\n\n" +
        "Usage: normfold COMMAND [options]\n\nCommands:\n" +
        string.Concat(Commands.Select(c => Printing.Wrap($"  {c.Name,-9}{c.Summary}", Command.HelpWidth, new string(' ', 11)) + "\n")) +
        "\nRun 'normfold COMMAND --help' for a command's options.\n" +
        Printing.Wrap($"Exit codes: {ExitCodes.Help}.", Command.HelpWidth, "  ") + "\n";
}
