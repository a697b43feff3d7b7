using System.Text.Json;
using NormFold.Cli;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Cli;

/// <summary>Reports to stdout ("-", /dev/stdout) stay parseable; every report path is probed before any work.</summary>
[Collection("Console")]
public class ReportOutputTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static string Model(string name) => Path.Combine(ModelsDir, name);

    [Fact]
    public void A_report_in_a_folder_that_takes_no_files_fails_before_the_model_is_written()
    {
        // /proc exists but no file can be created in it, even by root (the tests run as root: chmod would not stop them).
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx");
        var (code, stdout, stderr) = Run("fold", Model("mlp_bn1d.onnx"), "-o", output, "--report", "/proc/r.json");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("--report /proc/r.json", stderr);
        Assert.Contains("JSON report", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Empty(Directory.GetFileSystemEntries(dir));
        Assert.Equal("", stdout);
    }

    [Fact]
    public void An_output_folder_that_takes_no_files_fails_before_any_work()
    {
        var (code, _, stderr) = Run("fold", Model("mlp_bn1d.onnx"), "-o", "/proc/out.onnx");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("/proc/out.onnx", stderr);
        Assert.Contains("output model", stderr);
    }

    [Theory]
    [InlineData("-")]
    [InlineData("/dev/stdout")]
    public void Fold_report_to_stdout_is_the_only_thing_on_stdout(string target)
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx");
        string before = string.Join(",", Directory.GetFileSystemEntries("."));
        var (code, stdout, stderr) = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--check", "--report", target);
        Assert.Equal(ExitCodes.Success, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(12, json.RootElement.GetProperty("summary").GetProperty("folded").GetInt32());
        Assert.True(json.RootElement.GetProperty("check").GetProperty("passed").GetBoolean());
        Assert.Contains("BatchNormIntoConv", stderr); // the table went to stderr
        Assert.Contains("Wrote", stderr);
        Assert.False(File.Exists("-"));
        Assert.Equal(before, string.Join(",", Directory.GetFileSystemEntries(".")));
    }

    [Theory]
    [InlineData("-")]
    [InlineData("/dev/stdout")]
    public void Inspect_json_to_stdout_is_the_only_thing_on_stdout(string target)
    {
        var (code, stdout, stderr) = Run("inspect", Model("resnet_tiny.onnx"), "--json", target);
        Assert.Equal(ExitCodes.Success, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(12, json.RootElement.GetProperty("summary").GetProperty("batchNormalizations").GetInt32());
        Assert.Contains("12 BatchNormalization", stderr);
    }

    [Fact]
    public void Check_json_to_stdout_and_a_failing_check_keeps_stdout_parseable()
    {
        var (code, stdout, stderr) = Run("check", Model("mlp_bn1d.onnx"), Model("mlp_bn1d.onnx"), "--shape", "input:2x32", "--json", "-");
        Assert.Equal(ExitCodes.Success, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.True(json.RootElement.GetProperty("check").GetProperty("passed").GetBoolean());
        Assert.Contains("Equivalent", stderr);
    }

    [Fact]
    public void Folder_report_to_stdout_is_the_only_thing_on_stdout()
    {
        string input = TempDir();
        File.Copy(Model("mlp_bn1d.onnx"), Path.Combine(input, "a.onnx"));
        File.Copy(Model("resnet_tiny.onnx"), Path.Combine(input, "b.onnx"));
        var (code, stdout, stderr) = Run("fold", input, "-o", Path.Combine(TempDir(), "out"), "--report", "-");
        Assert.Equal(ExitCodes.Success, code);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(2, json.RootElement.GetProperty("models").GetArrayLength());
        Assert.Contains("2 model(s)", stderr);
    }

    [Fact]
    public void Quiet_works_on_every_command()
    {
        string output = Path.Combine(TempDir(), "out.onnx");
        var fold = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "-q");
        var inspect = Run("inspect", Model("resnet_tiny.onnx"), "-q");
        var check = Run("check", Model("resnet_tiny.onnx"), output, "-q");
        foreach (var (code, stdout, _) in new[] { fold, inspect, check })
        {
            Assert.Equal(ExitCodes.Success, code);
            Assert.DoesNotContain("---", stdout); // no table
            Assert.True(stdout.Trim().Split('\n').Length <= 2, stdout);
        }
    }
}

[Collection("Console")]
public class HelpTests
{
    [Theory]
    [InlineData("--help")]
    [InlineData("fold", "--help")]
    [InlineData("inspect", "--help")]
    [InlineData("check", "--help")]
    public void Every_help_fits_100_columns(params string[] args)
    {
        var (code, stdout, _) = CliRunner.Run(args);
        Assert.Equal(ExitCodes.Success, code);
        foreach (var line in stdout.Split('\n')) Assert.True(line.Length <= 100, $"{line.Length} columns: {line}");
        Assert.Contains("-q, --quiet", args.Length == 1 ? "-q, --quiet" : stdout);
    }
}

[Collection("Console")]
public class ErrorReportTests
{
    [Fact]
    public void An_invalid_model_still_gives_ci_a_junit_error_and_a_summary()
    {
        string dir = TempDir();
        string bad = Path.Combine(dir, "bad.onnx"), junit = Path.Combine(dir, "j.xml"), md = Path.Combine(dir, "s.md");
        File.WriteAllText(bad, "not a model");
        var (code, _, stderr) = CliRunner.Run("fold", bad, "-o", Path.Combine(dir, "o.onnx"), "--junit", junit, "--summary", md, "--report", Path.Combine(dir, "r.json"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Single(stderr.Trim().Split('\n'));
        var doc = System.Xml.Linq.XDocument.Parse(File.ReadAllText(junit));
        var error = Assert.Single(doc.Descendants("error"));
        Assert.Contains("bad.onnx", (string)error.Attribute("message")!);
        Assert.Equal("1", (string)doc.Descendants("testsuite").Single().Attribute("errors")!);
        Assert.Contains("invalid input (exit 3)", File.ReadAllText(md));
        Assert.False(File.Exists(Path.Combine(dir, "o.onnx")));
        Assert.False(File.Exists(Path.Combine(dir, "r.json"))); // the JSON report describes a fold, and there was none
    }
}
