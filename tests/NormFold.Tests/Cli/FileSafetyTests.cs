using NormFold.Cli;
using NormFold.Onnx;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Cli;

/// <summary>No combination of paths may replace a file NormFold reads, or one output another: each case used to
/// destroy an input or an output and still exit 0.</summary>
[Collection("Console")]
public class FileSafetyTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>A copy of the external-data model (m.onnx + mlp_bn1d.onnx.data) and of resnet_tiny (r.onnx), with checksums.</summary>
    static (string Dir, Func<bool> Untouched) Inputs()
    {
        string dir = TempDir();
        File.Copy(Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx"), Path.Combine(dir, "m.onnx"));
        File.Copy(Path.Combine(ModelsDir, "external", "mlp_bn1d.onnx.data"), Path.Combine(dir, "mlp_bn1d.onnx.data"));
        File.Copy(Path.Combine(ModelsDir, "resnet_tiny.onnx"), Path.Combine(dir, "r.onnx"));
        var before = Directory.GetFiles(dir).ToDictionary(f => f, File.ReadAllBytes);
        return (dir, () => before.All(kv => File.Exists(kv.Key) && File.ReadAllBytes(kv.Key).SequenceEqual(kv.Value)));
    }

    [Theory]
    [InlineData("fold", "m.onnx", "-o", "out.onnx", "--external-data-file", "m.onnx")]              // data file = input model
    [InlineData("fold", "r.onnx", "-o", "out.onnx", "--external-data-file", "r.onnx")]
    [InlineData("fold", "m.onnx", "-o", "mlp_bn1d.onnx.data")]                                      // output = input's data file
    [InlineData("fold", "r.onnx", "-o", "out.onnx", "--report", "r.onnx")]                          // report = input
    [InlineData("fold", "m.onnx", "-o", "out.onnx", "--report", "mlp_bn1d.onnx.data")]              // report = input's data file
    [InlineData("fold", "r.onnx", "-o", "out.onnx", "--report", "out.onnx")]                        // report = output
    [InlineData("fold", "r.onnx", "-o", "out.onnx", "--external-data-file", "out.onnx")]            // data file = output
    [InlineData("fold", "r.onnx", "-o", "out.onnx", "--check", "--external-data-file", "out.onnx")] // the same, checked (staged)
    [InlineData("fold", "m.onnx", "-o", "out.onnx", "--check", "--external-data-file", "m.onnx")]
    [InlineData("inspect", "r.onnx", "--json", "r.onnx")]
    [InlineData("check", "r.onnx", "m.onnx", "--json", "m.onnx")]
    [InlineData("check", "r.onnx", "m.onnx", "--json", "mlp_bn1d.onnx.data")]
    public void Paths_that_would_replace_an_input_or_an_output_are_refused(params string[] args)
    {
        var (dir, untouched) = Inputs();
        string cwd = Environment.CurrentDirectory;
        Environment.CurrentDirectory = dir;
        try
        {
            var (code, _, err) = Run(args);
            Assert.Equal(ExitCodes.InvalidInput, code);
            Assert.Matches("overwrite|would be the model file", err);
            Assert.DoesNotContain(".normfold-", err); // names the output, never the check's staging folder
            Assert.Single(err.Trim().Split('\n'));
        }
        finally { Environment.CurrentDirectory = cwd; }
        Assert.True(untouched(), "an input changed");
        Assert.False(File.Exists(Path.Combine(dir, "out.onnx")));
    }

    /// <summary>fuzz's fold-options:m23000257: a data file in a subfolder of the output's was refused only with --check
    /// (the staging folder had no such subfolder), naming the staging path; one in a missing folder is refused alike
    /// either way, naming the output.</summary>
    [Fact]
    public void A_data_file_in_a_subfolder_is_written_the_same_with_and_without_the_check()
    {
        var (dir, untouched) = Inputs();
        var written = new List<byte[]>();
        foreach (bool check in new[] { false, true })
        {
            string o = Path.Combine(dir, check ? "checked" : "plain");
            Directory.CreateDirectory(Path.Combine(o, "sub"));
            string output = Path.Combine(o, "f.onnx");
            var (code, _, err) = Run(["fold", Path.Combine(dir, "r.onnx"), "-o", output, "--external-data-file", "sub/w.data", "-q", .. check ? new[] { "--check" } : []]);
            Assert.True(code == ExitCodes.Success, err);
            Assert.Equal(["f.onnx"], Directory.GetFiles(o).Select(Path.GetFileName));
            Assert.Equal(["w.data"], Directory.GetFiles(Path.Combine(o, "sub")).Select(Path.GetFileName));
            Assert.Equal(["sub"], Directory.GetDirectories(o).Select(Path.GetFileName));
            written.Add([.. File.ReadAllBytes(output), .. File.ReadAllBytes(Path.Combine(o, "sub", "w.data"))]);
            AssertEquivalent(OnnxModel.Load(Path.Combine(dir, "r.onnx")), OnnxModel.Load(output));

            string missing = Path.Combine(o, "g.onnx");
            (code, _, err) = Run(["fold", Path.Combine(dir, "r.onnx"), "-o", missing, "--external-data-file", "nosub/w.data", .. check ? new[] { "--check" } : []]);
            Assert.Equal(ExitCodes.InvalidInput, code);
            Assert.Contains($"nosub/w.data: folder '{Path.Combine(o, "nosub")}' does not exist", err);
            Assert.DoesNotContain(".normfold-", err);
            Assert.False(File.Exists(missing));
        }
        Assert.Equal(written[0], written[1]);
        Assert.True(untouched());
    }

    [Fact]
    public void A_symlinked_model_and_data_file_are_read_through_the_links()
    {
        var (dir, untouched) = Inputs();
        string links = Path.Combine(dir, "links");
        Directory.CreateDirectory(links);
        File.CreateSymbolicLink(Path.Combine(links, "m.onnx"), Path.Combine(dir, "m.onnx"));
        File.CreateSymbolicLink(Path.Combine(links, "mlp_bn1d.onnx.data"), Path.Combine(dir, "mlp_bn1d.onnx.data"));
        string output = Path.Combine(dir, "out", "f.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        var (code, _, err) = Run("fold", Path.Combine(links, "m.onnx"), "-o", output, "--check", "-q");
        Assert.True(code == ExitCodes.Success, err);
        Assert.True(untouched());
        // Through a link to the input, the output is still the input.
        File.CreateSymbolicLink(Path.Combine(dir, "alias.onnx"), Path.Combine(dir, "r.onnx"));
        (code, _, err) = Run("fold", Path.Combine(dir, "r.onnx"), "-o", Path.Combine(dir, "alias.onnx"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("refusing to overwrite the input model", err);
        Assert.True(untouched());
    }

    [Fact]
    public void An_output_that_is_a_link_is_written_through_and_one_that_is_a_pipe_is_refused()
    {
        var (dir, _) = Inputs();
        string target = Path.Combine(dir, "target.onnx"), link = Path.Combine(dir, "link.onnx");
        File.WriteAllText(target, "old");
        File.CreateSymbolicLink(link, target);
        var (code, _, err) = Run("fold", Path.Combine(dir, "r.onnx"), "-o", link, "-q");
        Assert.True(code == ExitCodes.Success, err);
        Assert.NotNull(new FileInfo(link).LinkTarget); // still a link
        Assert.Equal(0, Count(OnnxModel.Load(target), "BatchNormalization"));

        string fifo = Path.Combine(dir, "pipe.onnx");
        using (var mk = System.Diagnostics.Process.Start("mkfifo", fifo)) mk.WaitForExit();
        (code, _, err) = Run("fold", Path.Combine(dir, "r.onnx"), "-o", fifo);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("not a regular file", err);
        Assert.False(File.Exists(fifo) && new FileInfo(fifo).Length > 0);
    }

    [Fact]
    public void A_250_character_output_name_is_legal_and_written()
    {
        var (dir, _) = Inputs();
        string output = Path.Combine(dir, new string('n', 245) + ".onnx");
        var (code, _, err) = Run("fold", Path.Combine(dir, "r.onnx"), "-o", output, "-q");
        Assert.True(code == ExitCodes.Success, err);
        Assert.True(File.Exists(output));
    }

    [Fact]
    public void In_a_folder_run_a_model_whose_output_folder_cannot_be_made_fails_alone()
    {
        string dir = TempDir(), input = Path.Combine(dir, "in"), output = Path.Combine(dir, "out");
        Directory.CreateDirectory(Path.Combine(input, "sub"));
        File.Copy(Path.Combine(ModelsDir, "resnet_tiny.onnx"), Path.Combine(input, "a.onnx"));
        File.Copy(Path.Combine(ModelsDir, "mlp_bn1d.onnx"), Path.Combine(input, "sub", "b.onnx"));
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "sub"), "a file where a folder is needed");
        var (code, stdout, err) = Run("fold", input, "-o", output);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("cannot create its folder", err);
        Assert.True(File.Exists(Path.Combine(output, "a.onnx")));
        Assert.Contains("a.onnx", stdout);
    }

    [Fact]
    public void An_output_folder_inside_the_input_folder_must_start_empty()
    {
        string dir = TempDir();
        File.Copy(Path.Combine(ModelsDir, "resnet_tiny.onnx"), Path.Combine(dir, "a.onnx"));
        Directory.CreateDirectory(Path.Combine(dir, "out"));
        File.Copy(Path.Combine(ModelsDir, "mlp_bn1d.onnx"), Path.Combine(dir, "out", "a.onnx")); // an input too
        var before = File.ReadAllBytes(Path.Combine(dir, "out", "a.onnx"));
        var (code, _, err) = Run("fold", dir, "-o", Path.Combine(dir, "out"), "-q");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("inside the input folder and is not empty", err);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(dir, "out", "a.onnx")));
        (code, _, err) = Run("fold", dir, "-o", Path.Combine(dir, "fresh"), "-q");
        Assert.True(code == ExitCodes.Success, err);
    }

    /// <summary>Links in the folders of a path, trailing slashes, a folder and its link: all the same place.</summary>
    [Fact]
    public void Links_to_folders_and_trailing_slashes_do_not_get_past_the_guards()
    {
        var (dir, untouched) = Inputs();
        Directory.CreateSymbolicLink(Path.Combine(dir, "L"), dir);
        string r = Path.Combine(dir, "r.onnx"), viaLink = Path.Combine(dir, "L", "r.onnx");
        foreach (var args in new[]
        {
            new[] { "fold", r, "-o", viaLink },
            ["fold", viaLink, "-o", r],
            ["fold", r, "-o", Path.Combine(dir, "out.onnx"), "--report", viaLink],
            ["inspect", r, "--json", viaLink],
            ["fold", Path.Combine(dir, "m.onnx"), "-o", Path.Combine(dir, "L", "mlp_bn1d.onnx.data")],
            ["fold", dir + "/", "-o", Path.Combine(dir, "L")],
            ["fold", dir + "/", "-o", Path.Combine(TempDir(), "o"), "--report", Path.Combine(dir, "x.onnx")],
        })
        {
            var (code, _, err) = Run(args);
            Assert.True(code == ExitCodes.InvalidInput, $"{string.Join(' ', args)}: exit {code} {err}");
        }
        Assert.True(untouched(), "an input changed");
    }

    [Fact]
    public void A_folder_run_refuses_one_data_file_name_for_all_its_models_and_does_not_follow_a_link_loop()
    {
        var (dir, _) = Inputs();
        var (code, _, err) = Run("fold", dir, "-o", Path.Combine(TempDir(), "o"), "--external-data-file", "w.data");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("names one file", err);
        Directory.CreateDirectory(Path.Combine(dir, "a"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "a", "up"), dir); // a loop
        string output = Path.Combine(TempDir(), "o");
        (code, _, err) = Run("fold", dir, "-o", output, "-q");
        Assert.True(code == ExitCodes.Success, err);
        Assert.Equal(2, Directory.GetFiles(output, "*.onnx", SearchOption.AllDirectories).Length); // m.onnx, r.onnx
    }

    [Fact]
    public void Saved_outputs_may_not_go_where_an_input_or_an_output_is()
    {
        var (dir, untouched) = Inputs();
        string npyDir = Path.Combine(dir, "in");
        Directory.CreateDirectory(npyDir);
        File.Copy(Path.Combine(ModelsDir, "npy", Directory.GetFiles(Path.Combine(ModelsDir, "npy"), "*.npy")[0]), Path.Combine(npyDir, "x.npy"));
        Directory.CreateDirectory(Path.Combine(dir, "reference"));
        File.Copy(Path.Combine(dir, "r.onnx"), Path.Combine(dir, "reference", "output.npy")); // as if a model were kept there
        var (code, _, err) = Run("check", Path.Combine(dir, "r.onnx"), Path.Combine(dir, "reference", "output.npy"), "--save-outputs", dir);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("--save-outputs", err);
        (code, _, err) = Run("check", Path.Combine(dir, "r.onnx"), Path.Combine(dir, "r.onnx"), "--input", "input=" + Path.Combine(npyDir, "x.npy"),
            "--save-outputs", Path.GetDirectoryName(npyDir)!, "--json", Path.Combine(dir, "candidate", "r.json"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.True(untouched());
    }

    [Fact]
    public void A_report_name_too_long_for_the_file_system_is_refused_before_any_work()
    {
        var (dir, _) = Inputs();
        string output = Path.Combine(dir, "o.onnx");
        var (code, _, err) = Run("fold", Path.Combine(dir, "r.onnx"), "-o", output, "--report", Path.Combine(dir, new string('j', 260) + ".json"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("longer than 255 bytes", err);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(dir, ".normfold-*"));
    }
}
