using NormFold.Cli;

return Cli.Run(args, Console.Out);
