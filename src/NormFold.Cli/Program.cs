using NormFold.Cli;

return Cli.Main(args, Console.Out);
