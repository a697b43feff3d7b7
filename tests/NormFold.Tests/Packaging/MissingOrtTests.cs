using System.Diagnostics;
using NormFold.Cli;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Packaging;

/// <summary>The CLI as a process whose ONNX Runtime native library is missing (a broken install or a copied binary).</summary>
public class MissingOrtTests
{
    /// <summary>A copy of the CLI's build output (this test's own folder) without ORT's native libraries.</summary>
    static string CliWithoutOrt()
    {
        string dir = TempDir();
        foreach (var file in Directory.GetFiles(AppContext.BaseDirectory))
        {
            string name = Path.GetFileName(file);
            if (name.Contains("onnxruntime", StringComparison.OrdinalIgnoreCase) && !name.EndsWith(".dll.config") && !name.StartsWith("Microsoft.ML"))
                continue; // libonnxruntime.so, onnxruntime.dll, libonnxruntime.dylib and their providers
            File.Copy(file, Path.Combine(dir, name));
        }
        return dir;
    }

    static (int Code, string Out, string Err) RunProcess(string dir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(Path.Combine(dir, "normfold.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr);
    }

    [Fact]
    public void Check_without_the_native_library_is_one_line_naming_it_and_folding_still_works()
    {
        string cli = CliWithoutOrt();
        Assert.DoesNotContain(Directory.GetFiles(cli), f => Path.GetFileName(f).Contains("onnxruntime.", StringComparison.OrdinalIgnoreCase)
            && !Path.GetFileName(f).StartsWith("Microsoft.ML"));
        string output = Path.Combine(TempDir(), "out.onnx");
        string model = Path.Combine(ModelsDir, "resnet_tiny.onnx");

        var (code, _, stderr) = RunProcess(cli, "fold", model, "-o", output, "--check");
        Assert.Equal(ExitCodes.InternalError, code);
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("ONNX Runtime's native library", line);
        Assert.Contains(OperatingSystem.IsWindows() ? "onnxruntime.dll" : OperatingSystem.IsMacOS() ? "libonnxruntime.dylib" : "libonnxruntime.so", line);
        Assert.DoesNotContain("type initializer", line);
        Assert.False(File.Exists(output));

        (code, _, stderr) = RunProcess(cli, "fold", model, "-o", output, "-q");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Equal("", stderr);
        Assert.True(File.Exists(output));
    }
}
