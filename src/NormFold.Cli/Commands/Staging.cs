using NormFold.Onnx;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

/// <summary>
/// `fold --check`: the folded model is written into a staging folder beside the output (same file names, so
/// external data locations stay valid), checked there, and moved into place only if the check passes.
/// </summary>
internal static class Staging
{
    /// <param name="accept">Whether to move the checked model into place (default: the check passed).</param>
    /// <param name="observe">Passed to the check (each iteration's outputs).</param>
    public static CheckReport SaveChecked(OnnxModel model, string input, string output, SaveOptions save, CheckSettings.Request request,
        Func<CheckReport, bool>? accept = null,
        Action<int, List<NamedTensor>, List<NamedTensor>, Dictionary<string, NamedTensor>>? observe = null)
    {
        string full = Path.GetFullPath(output);
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new InvalidModelException($"{output}: output folder '{dir}' does not exist");
        string staging = Path.Combine(dir, $".normfold-{Environment.ProcessId}-{Guid.NewGuid():N}");
        TempFiles.Track(staging, folder: true);
        Directory.CreateDirectory(staging);
        try
        {
            string staged = Path.Combine(staging, Path.GetFileName(full));
            ModelWriter.Save(model, staged, save);
            string label = $"the folded model ({output})";
            CheckReport report;
            try { report = CheckRun.Run(input, staged, request, label, observe); }
            catch (InvalidModelException e) when (e.Message.StartsWith(label, StringComparison.Ordinal))
            {
                // The original's session was made (and run) first, so ORT rejects what NormFold wrote: NormFold's bug
                // (exit 1), not bad input.
                throw new InvalidOperationException($"{e.Message} — the model NormFold wrote is not valid", e);
            }
            if (accept?.Invoke(report) ?? report.Passed)
                foreach (var file in Directory.GetFiles(staging))
                    File.Move(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
            return report;
        }
        finally
        {
            try { Directory.Delete(staging, recursive: true); } catch (IOException) { }
            TempFiles.Untrack(staging);
        }
    }
}
