using System.Text.Json;
using NormFold.Cli;
using Google.Protobuf;
using NormFold.Onnx;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Cli;

/// <summary>Runs the CLI in-process, capturing stdout and stderr (tests using it share the "Console" collection,
/// so they never swap Console.Error under each other).</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var saved = Console.Error;
        Console.SetError(stderr);
        try { return (NormFold.Cli.Cli.Run(args, stdout), stdout.ToString(), stderr.ToString()); }
        finally { Console.SetError(saved); }
    }
}

/// <summary>The command line as a user meets it: exit codes, one-line errors, files written or not.</summary>
[Collection("Console")]
public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static string Model(string name) => Path.Combine(ModelsDir, name);

    [Fact]
    public void Fold_writes_the_model_prints_the_table_and_a_json_report()
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx"), report = Path.Combine(dir, "r.json");
        var (code, stdout, stderr) = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--report", report);
        Assert.Equal(ExitCodes.Success, code);
        Assert.Equal("", stderr);
        Assert.Contains("BatchNormIntoConv", stdout);
        Assert.Contains("12 BatchNormalization: 12 folded", stdout);
        Assert.Equal(0, Count(OnnxModel.Load(output), "BatchNormalization"));
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(12, json.RootElement.GetProperty("summary").GetProperty("folded").GetInt32());
        var d = json.RootElement.GetProperty("decisions")[0];
        Assert.Equal("Folded", d.GetProperty("outcome").GetString());
        Assert.Equal("BatchNormIntoConv", d.GetProperty("rule").GetString());
    }

    /// <summary>A weight record the audit cannot replay (the folded tensor is missing) counts as inexact with no
    /// elements: the line read "2 of 0 elements in 0 folded weight tensor(s) differ … (worst: '')".</summary>
    [Fact]
    public void A_weight_audit_record_that_cannot_be_replayed_is_named()
    {
        var original = OnnxModel.Load(Model("mlp_bn1d.onnx"));
        var (_, r) = Fold(original);
        var audit = NormFold.Verification.WeightAudit.Run(original, original, r.Log); // the candidate never was folded
        var report = new NormFold.Verification.CheckReport(false, [], [], [], new NormFold.Verification.CheckOptions(), "1.31.1", Audit: audit);
        string text = Printing.Check(report, width: 1000);
        Assert.Contains($"Weight audit FAILED: {audit.Skipped.Count} folded weight tensor(s) could not be replayed: ", text);
        Assert.Contains("no such tensor", text);
        Assert.DoesNotContain("of 0 elements", text);
    }

    /// <summary>affine_stem_patchify: the BN and the three affine candidates all fold; the summary line said
    /// "3 other candidate(s): 0 replaced, 0 left" (the folded ones were not counted anywhere).</summary>
    [Fact]
    public void The_summary_line_counts_folded_affine_candidates()
    {
        var (code, stdout, _) = Run("inspect", Model("affine_stem_patchify.onnx"));
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("1 BatchNormalization: 1 folded, 0 replaced by Mul+Add, 0 left. 3 other candidate(s): 3 folded, 0 replaced, 0 left.", stdout);
    }

    [Fact]
    public void Fold_check_is_no_false_alarm_when_a_named_conv_is_also_read_by_a_relu()
    {
        // Issue 9, defect 2: the BN becomes Mul + Add, outputs match; the old audit compared the Conv's untouched weights
        // with the exact fold and exited 2 ("162 of 162 elements … differ from the exact fold").
        var g = new NormFold.Tests.Builders.GraphBuilder(15);
        g.Input("x", NormFold.Tests.Builders.GraphBuilder.F32, [1, 3, 5, 5]);
        g.Init("w", NormFold.Tests.Builders.GraphBuilder.F32, [6, 3, 3, 3]);
        g.Node("Conv", ["x", "w"], "c", "conv");
        g.Bn("c", 6, "y");
        g.Node("Relu", ["c"], "r", "relu");
        g.Output("y", NormFold.Tests.Builders.GraphBuilder.F32, [1, 6, 3, 3]);
        g.Output("r", NormFold.Tests.Builders.GraphBuilder.F32, [1, 6, 3, 3]);
        string dir = TempDir(), input = Path.Combine(dir, "in.onnx"), output = Path.Combine(dir, "out.onnx");
        ModelWriter.Save(g.Build(), input);
        var (code, stdout, stderr) = Run("fold", input, "-o", output, "--check");
        Assert.True(code == ExitCodes.Success, stdout + stderr);
        Assert.Contains("Weight audit: 2", stdout);
        Assert.True(File.Exists(output));
    }

    [Fact]
    public void Fold_with_check_passes_on_a_real_model()
    {
        string output = Path.Combine(TempDir(), "out.onnx");
        var (code, stdout, _) = Run("fold", Model("mlp_bn1d.onnx"), "-o", output, "--check", "--shape", "input:4x32", "--iterations", "2");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("equivalence check passed", stdout);
        Assert.True(File.Exists(output));
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(output)!)); // staging folder removed
    }

    [Fact]
    public void Fold_with_a_failing_check_exits_2_and_writes_nothing()
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx"), report = Path.Combine(dir, "r.json");
        // A tolerance of zero on a float output: folding reorders roundings, so some element differs.
        var (code, _, stderr) = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--check", "--atol", "0", "--rtol", "0", "--report", report);
        Assert.Equal(ExitCodes.CheckFailed, code);
        Assert.Contains("equivalence check failed", stderr);
        Assert.False(File.Exists(output));
        Assert.Equal([report], Directory.GetFileSystemEntries(dir));
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.False(json.RootElement.GetProperty("check").GetProperty("passed").GetBoolean());
    }

    [Fact]
    public void Inspect_writes_nothing_but_shows_the_plan()
    {
        string dir = TempDir();
        var (code, stdout, _) = Run("inspect", Model("mlp_bn1d.onnx"));
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("BatchNormIntoGemm", stdout);
        Assert.Contains("BatchNormIntoMatMul", stdout);
        Assert.Contains("BatchNormalization  2       0", stdout);
        Assert.Empty(Directory.GetFileSystemEntries(dir));
    }

    [Fact]
    public void Check_compares_two_models_and_exits_0()
    {
        string output = Path.Combine(TempDir(), "out.onnx");
        Assert.Equal(ExitCodes.Success, Run("fold", Model("decoder_convtranspose.onnx"), "-o", output).Code);
        var (code, stdout, _) = Run("check", Model("decoder_convtranspose.onnx"), output, "--seed", "3", "--iterations", "2");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("Equivalent", stdout);
    }

    [Fact]
    public void Check_of_different_models_exits_2()
    {
        var (code, stdout, _) = Run("check", Model("resnet_tiny.onnx"), Model("resnet_tiny_op15.onnx"));
        Assert.Equal(ExitCodes.CheckFailed, code);
        Assert.Contains("NOT equivalent", stdout);
    }

    [Theory]
    [InlineData(new[] { "fold", "missing.onnx", "-o", "x.onnx" }, "missing.onnx: file not found")]
    [InlineData(new[] { "fold", "a.onnx" }, "missing -o")]
    [InlineData(new[] { "fold", "a.onnx", "-o", "b.onnx", "--frobnicate" }, "unknown option '--frobnicate'")]
    [InlineData(new[] { "fold", "a.onnx", "-o", "b.onnx", "--disable", "NoSuchRule" }, "unknown rule 'NoSuchRule'")]
    [InlineData(new[] { "fold", "a.onnx", "-o", "b.onnx", "--seed", "3" }, "need --check")]
    [InlineData(new[] { "check", "a.onnx" }, "expected two models")]
    [InlineData(new[] { "check", "a.onnx", "b.onnx", "--ort-level", "max" }, "--ort-level must be")]
    [InlineData(new[] { "frob" }, "unknown command 'frob'")]
    public void Bad_arguments_exit_3_with_one_line(string[] args, string expected)
    {
        var (code, _, stderr) = Run(args);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void An_invalid_model_exits_3_without_a_stack_trace_unless_verbose()
    {
        string dir = TempDir();
        string bad = Path.Combine(dir, "bad.onnx");
        File.WriteAllBytes(bad, [0x0a, 0xff, 0xff, 0xff]);
        var (code, _, stderr) = Run("fold", bad, "-o", Path.Combine(dir, "out.onnx"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("bad.onnx: not an ONNX model", stderr);
        Assert.DoesNotContain("   at ", stderr);
        var (_, _, verbose) = Run("fold", bad, "-o", Path.Combine(dir, "out.onnx"), "--verbose");
        Assert.Contains("   at ", verbose);
        Assert.False(File.Exists(Path.Combine(dir, "out.onnx")));
    }

    [Fact]
    public void Fold_refuses_to_write_over_its_input()
    {
        string dir = TempDir();
        string path = Path.Combine(dir, "m.onnx");
        File.Copy(Model("mlp_bn1d.onnx"), path);
        var (code, _, stderr) = Run("fold", path, "-o", path);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("refusing to overwrite the input", stderr);
        Assert.Equal(File.ReadAllBytes(Model("mlp_bn1d.onnx")), File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData("fold")]
    [InlineData("inspect")]
    [InlineData("check")]
    public void Help_lists_every_option_the_command_accepts(string command)
    {
        var (code, stdout, _) = Run(command, "--help");
        Assert.Equal(ExitCodes.Success, code);
        var cmd = NormFold.Cli.Cli.Commands.Single(c => c.Name == command);
        foreach (var o in cmd.Options) Assert.Contains(o.Name, stdout);
        Assert.Contains("Exit codes", stdout);
        // A command with a gate says it can exit 4 (fold's help once listed 0–3 only).
        string exits = System.Text.RegularExpressions.Regex.Replace(stdout[stdout.IndexOf("Exit codes")..], @"\s+", " ");
        if (cmd.Options.Any(o => o.Name is "--require-all-folded" or "--max-drift" or "--min-cosine"))
            Assert.Contains(", 4 ", exits);
    }

    /// <summary>--help, the README and the library agree on what --keep-standalone-bn keeps: the BNs (and the affine
    /// ops next to them), while other affine ops still merge.</summary>
    [Fact]
    public void Keep_standalone_bn_is_described_alike_in_help_and_readme()
    {
        var (_, stdout, _) = Run("fold", "--help");
        string readme = File.ReadAllText(Path.Combine(TestSupport.RepoRoot, "README.md"));
        foreach (var text in new[] { System.Text.RegularExpressions.Regex.Replace(stdout, @"\s+", " "), readme })
        {
            Assert.Contains("not merged with the affine ops next to them", text);
            Assert.Contains("other affine ops still merge", text);
        }
    }
}

[Collection("Console")]
public class CheckCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static string Model(string name) => Path.Combine(ModelsDir, name);

    /// <summary>Text as one line: lines wrapped to the terminal's width joined again.</summary>
    static string Flat(string s) => System.Text.RegularExpressions.Regex.Replace(s, @"\s+", " ");

    static string Folded(string name)
    {
        string output = Path.Combine(TempDir(), name);
        Assert.Equal(0, Run("fold", Model(name), "-o", output, "-q").Code);
        return output;
    }

    [Fact]
    public void Check_with_npy_input_saves_outputs_and_writes_json()
    {
        string folded = Folded("resnet_tiny.onnx");
        string dir = TempDir();
        var (code, stdout, _) = Run("check", Model("resnet_tiny.onnx"), folded, "--input", "input=" + Model("resnet_tiny.input.npy"),
            "--save-outputs", dir, "--json", Path.Combine(dir, "r.json"), "--localize");
        Assert.Equal(0, code);
        Assert.Contains("Shared intermediate tensors", stdout);
        var saved = NormFold.Verification.Npy.Read(Path.Combine(dir, "reference", "output.npy"));
        Assert.Equal([2L, 10], saved.Shape);
        Assert.True(File.Exists(Path.Combine(dir, "candidate", "output.npy")));
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "r.json")));
        var check = json.RootElement.GetProperty("check");
        Assert.True(check.GetProperty("passed").GetBoolean());
        Assert.Equal("1.31.1", check.GetProperty("ortVersion").GetString());
        Assert.StartsWith("files: input=", check.GetProperty("inputs").GetString());
        Assert.True(check.GetProperty("intermediates").GetArrayLength() > 10);
        Assert.True(check.GetProperty("outputs")[0].TryGetProperty("p99Abs", out _));
    }

    [Fact]
    public void Check_reads_a_test_data_set_folder()
    {
        var (code, stdout, _) = Run("check", Model("mlp_bn1d.onnx"), Folded("mlp_bn1d.onnx"), "--inputs", Model("mlp_bn1d_data"));
        Assert.Equal(0, code);
        Assert.Contains("test_data_set", stdout);
        Assert.Contains("output_0.pb: the original reproduces it", Flat(stdout));
        // Expected outputs that the original does not reproduce are reported (the verdict is about the two models).
        string dir = Path.Combine(TempDir(), "test_data_set_0");
        Directory.CreateDirectory(dir);
        File.Copy(Model("mlp_bn1d_data/test_data_set_0/input_0.pb"), Path.Combine(dir, "input_0.pb"));
        var wrong = NormFold.Onnx.Proto.TensorProto.Parser.ParseFrom(File.ReadAllBytes(Model("mlp_bn1d_data/test_data_set_0/output_0.pb")));
        wrong.RawData = Google.Protobuf.ByteString.CopyFrom(new byte[wrong.RawData.Length]);
        File.WriteAllBytes(Path.Combine(dir, "output_0.pb"), wrong.ToByteArray());
        var (code2, stdout2, _) = Run("check", Model("mlp_bn1d.onnx"), Folded("mlp_bn1d.onnx"), "--inputs", Path.GetDirectoryName(dir)!);
        Assert.Equal(0, code2);
        Assert.Contains("the ORIGINAL does not reproduce it", Flat(stdout2));
    }

    [Fact]
    public void A_drifting_intermediate_fails_the_check_and_is_named()
    {
        // γ of one channel changed by 10%: visible at that BN's output even where the final output hides it.
        var original = OnnxModel.Load(Model("resnet_tiny.onnx"));
        var proto = original.Proto.Clone();
        var gamma = proto.Graph.Initializer.Single(t => t.Name == "layers.1.bn1.weight");
        var v = original.ReadDoubles(original.Proto.Graph.Initializer.Single(t => t.Name == "layers.1.bn1.weight"));
        v[Array.IndexOf(v, v.MaxBy(Math.Abs))] *= 1.1;
        proto.Graph.Initializer[proto.Graph.Initializer.IndexOf(gamma)] = NormFold.Tensors.TensorData.Create(gamma.Name, 1, gamma.Dims, v);
        string dir = TempDir();
        string planted = Path.Combine(dir, "planted.onnx");
        File.WriteAllBytes(planted, proto.ToByteArray());
        string broken = Path.Combine(dir, "broken.onnx");
        Assert.Equal(0, Run("fold", planted, "-o", broken, "-q").Code);
        var (code, stdout, _) = Run("check", Model("resnet_tiny.onnx"), broken);
        Assert.Equal(ExitCodes.CheckFailed, code);
        Assert.Contains("First intermediate to drift", stdout);
        Assert.Contains("layers.1/bn1", stdout);
    }

    [Theory]
    [InlineData("--input", "nosuch=x.npy", "not an input of the model")]
    [InlineData("--inputs", "/no/such/dir", "folder not found")]
    [InlineData("--shape", "input:1x3", "2 dims given")]
    [InlineData("--value-range", "3,1", "LO ≤ HI")]
    public void Bad_check_inputs_exit_3(string option, string value, string expected)
    {
        var (code, _, stderr) = Run("check", Model("resnet_tiny.onnx"), Model("resnet_tiny.onnx"), option, value);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains(expected, stderr);
    }

    [Fact]
    public void Outputs_only_skips_intermediates()
    {
        var (code, stdout, _) = Run("check", Model("resnet_tiny.onnx"), Folded("resnet_tiny.onnx"), "--outputs-only");
        Assert.Equal(0, code);
        Assert.DoesNotContain("intermediate", stdout);
    }
}

[Collection("Console")]
public class BatchCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void A_folder_folds_every_model_into_the_same_relative_paths_and_one_bad_model_does_not_stop_the_rest()
    {
        string input = TempDir(), output = Path.Combine(TempDir(), "out");
        Directory.CreateDirectory(Path.Combine(input, "sub"));
        File.Copy(Path.Combine(ModelsDir, "resnet_tiny.onnx"), Path.Combine(input, "a.onnx"));
        File.Copy(Path.Combine(ModelsDir, "mlp_bn1d.onnx"), Path.Combine(input, "sub", "b.onnx"));
        File.WriteAllBytes(Path.Combine(input, "bad.onnx"), [0x0a, 0xff, 0xff]);
        Directory.CreateDirectory(Path.Combine(input, "broken"));
        File.WriteAllBytes(Path.Combine(input, "broken", "bad2.onnx"), [0x0a, 0xff, 0xff]);
        string report = Path.Combine(TempDir(), "r.json");
        var (code, stdout, stderr) = Run("fold", input, "-o", output, "--jobs", "2", "--report", report);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("4 model(s)", stdout);
        Assert.Contains("2 written", stdout);
        Assert.Contains("[4/4]", stderr);
        Assert.False(Directory.Exists(Path.Combine(output, "broken"))); // no empty folder left for models that failed
        Assert.Contains("bad.onnx: not an ONNX model", stdout);
        Assert.Equal(0, Count(OnnxModel.Load(Path.Combine(output, "a.onnx")), "BatchNormalization"));
        Assert.Equal(0, Count(OnnxModel.Load(Path.Combine(output, "sub", "b.onnx")), "BatchNormalization"));
        Assert.False(File.Exists(Path.Combine(output, "bad.onnx")));
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(4, json.RootElement.GetProperty("models").GetArrayLength());
    }

    [Fact]
    public void A_folder_of_good_models_exits_0_and_the_output_folder_must_differ()
    {
        string input = TempDir();
        File.Copy(Path.Combine(ModelsDir, "decoder_convtranspose.onnx"), Path.Combine(input, "d.onnx"));
        Assert.Equal(ExitCodes.Success, Run("fold", input, "-o", Path.Combine(TempDir(), "o"), "-q").Code);
        var (code, _, stderr) = Run("fold", input, "-o", input);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("must differ", stderr);
    }
}

[Collection("Console")]
public class CliEdgeCaseTests
{
    static string Model(string name) => Path.Combine(ModelsDir, name);

    [Fact]
    public void A_report_path_that_cannot_be_written_fails_before_anything_is_written()
    {
        string dir = TempDir(), output = Path.Combine(dir, "x.onnx");
        var (code, _, stderr) = CliRunner.Run("fold", Model("mlp_bn1d.onnx"), "-o", output, "--report", "/nonexistent-folder/r.json");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("--report /nonexistent-folder/r.json", stderr);
        Assert.Empty(Directory.GetFileSystemEntries(dir));
        Assert.Equal(ExitCodes.InvalidInput, CliRunner.Run("fold", Model("mlp_bn1d.onnx"), "-o", output, "--report", dir).Code);
        Assert.Empty(Directory.GetFileSystemEntries(dir));
    }

    [Fact]
    public void An_option_name_is_never_taken_as_another_options_value()
    {
        string dir = TempDir();
        var (code, _, stderr) = CliRunner.Run("fold", Model("mlp_bn1d.onnx"), "-o", "--check");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("'--output' needs a value", stderr);
        Assert.False(File.Exists("--check"));
    }

    [Fact]
    public void An_output_that_is_a_folder_is_refused_in_one_line()
    {
        string dir = TempDir();
        var (code, _, stderr) = CliRunner.Run("fold", Model("mlp_bn1d.onnx"), "-o", dir + "/");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("is a folder", stderr);
    }

    [Theory]
    [InlineData("--shape", "input:0x3x32x32", "≥ 1")]
    [InlineData("--atol", "nope:1e-3", "'nope', which is neither an output")]
    public void Check_options_that_would_compare_nothing_or_name_nothing_are_refused(string option, string value, string expected)
    {
        var (code, _, stderr) = CliRunner.Run("check", Model("resnet_tiny.onnx"), Model("resnet_tiny_op15.onnx"), option, value);
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains(expected, stderr);
    }

    [Fact]
    public void Check_of_models_with_different_inputs_names_the_file_and_the_input()
    {
        var (code, _, stderr) = CliRunner.Run("check", Model("resnet_tiny.onnx"), Model("resnet_tiny_fp16.onnx"));
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("resnet_tiny_fp16.onnx: input 'input' is float16", stderr);
    }

    [Fact]
    public void Target_opset_needs_a_swap()
    {
        var (code, _, stderr) = CliRunner.Run("fold", Model("mlp_bn1d.onnx"), "-o", Path.Combine(TempDir(), "x.onnx"), "--target-opset", "21");
        Assert.Equal(ExitCodes.InvalidInput, code);
        Assert.Contains("only applies to --swap-groupnorm", stderr);
    }

    [Fact]
    public void A_folder_folded_into_its_parent_finds_its_models()
    {
        string root = TempDir();
        string models = Path.Combine(root, "models");
        Directory.CreateDirectory(models);
        File.Copy(Model("mlp_bn1d.onnx"), Path.Combine(models, "m.onnx"));
        var (code, stdout, _) = CliRunner.Run("fold", models, "-o", root, "-q");
        Assert.Equal(ExitCodes.Success, code);
        Assert.Contains("1 model(s)", stdout);
        Assert.True(File.Exists(Path.Combine(root, "m.onnx")));
    }

    [Fact]
    public void Groupnorm_whose_opset_is_too_low_says_so_for_every_candidate()
    {
        var (_, stdout, _) = CliRunner.Run("inspect", Model("groupnorm_op13.onnx"), "--swap-groupnorm");
        Assert.Equal(2, stdout.Split('\n').Count(l => l.Contains("OpsetTooLow")));
    }
}
