using System.Text.Json;
using NormFold.Cli;
using NormFold.Cli.Commands;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Cli;

/// <summary>A check's progress on stderr: one line per stage when stderr is not a terminal (as here), none with -q,
/// none before the delay, and never on stdout.</summary>
[Collection("Console")]
public class CheckProgressTests : IDisposable
{
    static readonly System.Text.RegularExpressions.Regex Line = new(@"^normfold: check: iteration 1 of 2(, batch \d+[^:]*)?: (running the original|running the rewritten model|comparing \d+ tensor\(s\)) \(\d+\.\d s\)$");
    readonly TimeSpan _saved = CheckProgress.Delay;
    readonly string _original = Path.Combine(ModelsDir, "resnet_tiny.onnx"), _folded;

    public CheckProgressTests()
    {
        _folded = Path.Combine(TempDir(), "folded.onnx");
        Assert.Equal(ExitCodes.Success, CliRunner.Run("fold", _original, "-o", _folded).Code);
    }

    public void Dispose() => CheckProgress.Delay = _saved;

    [Fact]
    public void Without_a_terminal_each_stage_is_one_line_on_stderr()
    {
        CheckProgress.Delay = TimeSpan.Zero;
        var (code, stdout, stderr) = CliRunner.Run("check", _original, _folded, "--iterations", "2");
        Assert.Equal(ExitCodes.Success, code);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToList();
        Assert.All(lines, l => Assert.Matches(Line, l.Replace("iteration 2 of 2", "iteration 1 of 2")));
        Assert.DoesNotContain('\u001b', stderr); // no terminal control codes in a log
        foreach (int it in new[] { 1, 2 })
            foreach (var stage in new[] { "running the original", "running the rewritten model", "comparing" })
                Assert.Contains(lines, l => l.StartsWith($"normfold: check: iteration {it} of 2") && l.Contains(": " + stage));
        Assert.DoesNotContain("running the original", stdout);
    }

    [Fact]
    public void Quiet_silences_it()
    {
        CheckProgress.Delay = TimeSpan.Zero;
        var (code, _, stderr) = CliRunner.Run("check", _original, _folded, "--iterations", "2", "-q");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Equal("", stderr);
    }

    [Fact]
    public void A_check_shorter_than_the_delay_prints_none()
    {
        CheckProgress.Delay = TimeSpan.FromHours(1);
        var (code, _, stderr) = CliRunner.Run("check", _original, _folded);
        Assert.Equal(ExitCodes.Success, code);
        Assert.DoesNotContain("normfold: check: iteration", stderr);
    }

    [Fact]
    public void With_the_json_report_on_stdout_stdout_stays_json()
    {
        CheckProgress.Delay = TimeSpan.Zero;
        var (code, stdout, stderr) = CliRunner.Run("check", _original, _folded, "--iterations", "2", "--json", "-");
        Assert.Equal(ExitCodes.Success, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.True(json.RootElement.GetProperty("check").GetProperty("passed").GetBoolean());
        Assert.Contains("normfold: check: iteration 2 of 2: comparing", stderr);
    }

    [Fact]
    public void Fold_check_shows_it_too_and_quiet_silences_it()
    {
        CheckProgress.Delay = TimeSpan.Zero;
        string output = Path.Combine(TempDir(), "out.onnx");
        var (code, _, stderr) = CliRunner.Run("fold", _original, "-o", output, "--check");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("normfold: fold: iteration 1 of 1: running the original", stderr);
        (code, _, stderr) = CliRunner.Run("fold", _original, "-o", output, "--check", "-q");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Equal("", stderr);
    }
}
