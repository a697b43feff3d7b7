using System.Text.Json;
using System.Xml;
using System.Xml.Linq;
using System.Xml.Schema;
using Json.Schema;
using NormFold.Cli;
using NormFold.Onnx;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Cli;

/// <summary>The reports as CI and people read them: JSON valid against docs/schemas, JUnit valid against the JUnit
/// schema CI reporters follow, Markdown, and a self-contained HTML page with its charts; and the gates.</summary>
[Collection("Console")]
public class ReportFormatTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static string Model(string name) => Path.Combine(ModelsDir, name);

    // ---- JSON against the published schemas ----

    static readonly Lazy<Dictionary<string, JsonSchema>> Schemas = new(() =>
    {
        var build = new BuildOptions();
        var result = new Dictionary<string, JsonSchema>();
        foreach (var name in new[] { "fold-report", "check-report", "folder-report" }) // fold first: the others refer to it
        {
            var schema = JsonSchema.FromText(File.ReadAllText(Path.Combine(RepoRoot, "docs", "schemas", name + ".schema.json")), build);
            build.SchemaRegistry.Register(schema);
            result[name] = schema;
        }
        return result;
    });

    internal static void AssertValid(string schema, string json)
    {
        using var doc = JsonDocument.Parse(json);
        var result = Schemas.Value[schema].Evaluate(doc.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        var errors = (result.Details ?? []).Where(d => d.Errors is { Count: > 0 }).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key}: {e.Value}"));
        Assert.True(result.IsValid, $"{schema}: " + string.Join("\n", errors));
    }

    [Fact]
    public void A_schema_rejects_what_it_does_not_describe()
    {
        string dir = TempDir(), json = Path.Combine(dir, "r.json");
        Assert.Equal(0, Run("inspect", Model("mlp_bn1d.onnx"), "--json", json).Code);
        var text = File.ReadAllText(json);
        AssertValid("fold-report", text);
        using var doc = JsonDocument.Parse(text.Replace("\"nodesBefore\"", "\"nodesBeforeX\""));
        Assert.False(Schemas.Value["fold-report"].Evaluate(doc.RootElement).IsValid);
    }

    [Fact]
    public void Fold_check_and_folder_reports_match_their_schemas()
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx");
        var fold = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--check", "--max-drift", "1e-3", "--require-all-folded", "--report", "-");
        Assert.Equal(0, fold.Code);
        AssertValid("fold-report", fold.Out);
        using (var doc = JsonDocument.Parse(fold.Out))
        {
            var root = doc.RootElement;
            Assert.Equal(0, root.GetProperty("exitCode").GetInt32());
            Assert.Equal("fold", root.GetProperty("commandLine")[1].GetString());
            Assert.True(root.GetProperty("gates").GetProperty("passed").GetBoolean());
            var hist = root.GetProperty("check").GetProperty("outputs")[0].GetProperty("histogram");
            long total = hist.GetProperty("exact").GetInt64() + hist.GetProperty("counts").EnumerateArray().Sum(c => c.GetInt64()) + hist.GetProperty("nonFinite").GetInt64();
            Assert.Equal(10, total); // one iteration of a [1,10] output
        }

        var check = Run("check", Model("resnet_tiny.onnx"), output, "--json", "-", "--iterations", "2");
        Assert.Equal(0, check.Code);
        AssertValid("check-report", check.Out);

        string input = TempDir();
        File.Copy(Model("mlp_bn1d.onnx"), Path.Combine(input, "a.onnx"));
        File.Copy(Model("resnet_tiny.onnx"), Path.Combine(input, "b.onnx"));
        File.WriteAllText(Path.Combine(input, "broken.onnx"), "not a model");
        var folder = Run("fold", input, "-o", Path.Combine(dir, "out"), "--check", "--report", "-");
        Assert.Equal(ExitCodes.InvalidInput, folder.Code);
        AssertValid("folder-report", folder.Out);
        using var f = JsonDocument.Parse(folder.Out);
        var totals = f.RootElement.GetProperty("totals");
        Assert.Equal(3, totals.GetProperty("models").GetInt32());
        Assert.Equal(2, totals.GetProperty("written").GetInt32());
        Assert.Equal(1, totals.GetProperty("invalidInputs").GetInt32());
        Assert.Equal(14, totals.GetProperty("folded").GetInt32());
        Assert.Equal(ExitCodes.InvalidInput, f.RootElement.GetProperty("exitCode").GetInt32());
        Assert.False(string.IsNullOrEmpty(f.RootElement.GetProperty("version").GetString()));
        var drift = f.RootElement.GetProperty("models").EnumerateArray().First(m => m.GetProperty("exitCode").GetInt32() == 0).GetProperty("drift");
        Assert.True(drift.GetProperty("maxRelativeToMagnitude").GetDouble() < 1e-4);
    }

    // ---- Gates ----

    /// <summary>Relu → BN: no producer can absorb it, so it is replaced by Mul + Add (or left with --keep-standalone-bn).</summary>
    static string ReluBnModel()
    {
        var g = new GraphBuilder(15);
        g.Input("x", F32, [2, 4, 3, 3]);
        g.Node("Relu", ["x"], "r", "relu");
        g.Bn("r", 4, "y", name: "bn");
        g.Output("y", F32, [2, 4, 3, 3]);
        string path = Path.Combine(TempDir(), "relu_bn.onnx");
        File.WriteAllBytes(path, Google.Protobuf.MessageExtensions.ToByteArray(g.Proto));
        return path;
    }

    [Fact]
    public void Require_all_folded_fails_with_exit_4_lists_each_bn_with_its_reason_and_writes_nothing()
    {
        string model = ReluBnModel();
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx"), junit = Path.Combine(dir, "j.xml");
        var (code, _, stderr) = Run("fold", model, "-o", output, "--require-all-folded", "--junit", junit, "--report", Path.Combine(dir, "r.json"));
        Assert.Equal(ExitCodes.GateFailed, code);
        Assert.False(File.Exists(output));
        Assert.Contains("--require-all-folded", stderr);
        Assert.Contains("BatchNormalization 'bn'", stderr);
        Assert.Contains("ProducerNotFoldable", stderr);
        var report = File.ReadAllText(Path.Combine(dir, "r.json"));
        AssertValid("fold-report", report);
        using var doc = JsonDocument.Parse(report);
        Assert.Equal(ExitCodes.GateFailed, doc.RootElement.GetProperty("exitCode").GetInt32());
        Assert.False(doc.RootElement.TryGetProperty("output", out _));
        var failure = doc.RootElement.GetProperty("gates").GetProperty("failures")[0];
        Assert.Contains("ProducerNotFoldable", failure.GetProperty("reason").GetString());
        var xml = AssertValidJUnit(File.ReadAllText(junit));
        var foldCase = xml.Descendants("testcase").Single(c => (string?)c.Attribute("name") == "fold");
        Assert.Contains("ProducerNotFoldable", foldCase.Element("failure")!.Value);

        // The same model without the gate: exit 0, written (a BN replaced by Mul + Add is correct, just not folded).
        Assert.Equal(0, Run("fold", model, "-o", output, "-q").Code);
        Assert.True(File.Exists(output));
        // inspect gates the plan, writing nothing.
        Assert.Equal(ExitCodes.GateFailed, Run("inspect", model, "--require-all-folded", "-q").Code);
        Assert.Equal(0, Run("inspect", Model("resnet_tiny.onnx"), "--require-all-folded", "-q").Code);
    }

    [Fact]
    public void Require_all_folded_counts_an_affine_candidate_left_and_not_a_plain_mul()
    {
        // Conv → Mul(per-channel constant) whose Conv output is also read by a Relu: the Mul is a candidate, left.
        var g = NormFold.Tests.Rewriting.Affine.AffineTestGraphs.Conv();
        NormFold.Tests.Rewriting.Affine.AffineTestGraphs.Op(g, "Mul", "c", [6, 1, 1], "m");
        g.Node("Relu", ["c"], "r", "relu");
        g.Output("m", F32, null);
        g.Output("r", F32, null);
        string model = Path.Combine(TempDir(), "conv_mul.onnx");
        File.WriteAllBytes(model, Google.Protobuf.MessageExtensions.ToByteArray(g.Proto));
        var (code, _, stderr) = Run("inspect", model, "--require-all-folded", "-q");
        Assert.Equal(ExitCodes.GateFailed, code);
        Assert.Contains("Mul 'm_node'", stderr);
        Assert.Contains("ProducerHasOtherConsumers", stderr);

        // A Mul by a constant with no linear op beside it is no candidate: nothing to gate.
        var plain = new GraphBuilder(15);
        plain.Input("x", F32, [2, 4, 3, 3]);
        plain.Node("Relu", ["x"], "r", "relu");
        NormFold.Tests.Rewriting.Affine.AffineTestGraphs.Op(plain, "Mul", "r", [4, 1, 1], "m");
        plain.Output("m", F32, null);
        File.WriteAllBytes(model, Google.Protobuf.MessageExtensions.ToByteArray(plain.Proto));
        Assert.Equal(0, Run("inspect", model, "--require-all-folded", "-q").Code);
    }

    [Fact]
    public void Drift_gates_fail_with_exit_4_and_write_nothing_when_the_drift_is_beyond_them()
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "out.onnx");
        // A correct fold drifts by rounding: above 0, far below 1e-3.
        var (code, _, stderr) = Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--check", "--max-drift", "0");
        Assert.Equal(ExitCodes.GateFailed, code);
        Assert.Contains("--max-drift", stderr);
        Assert.Contains("output 'output'", stderr);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFileSystemEntries(dir));
        Assert.Equal(0, Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--check", "--max-drift", "1e-3", "--min-cosine", "0.9999", "-q").Code);
        Assert.True(File.Exists(output));
        var check = Run("check", Model("resnet_tiny.onnx"), output, "--min-cosine", "1", "-q");
        Assert.Equal(ExitCodes.GateFailed, check.Code);
        Assert.Contains("--min-cosine", check.Err);
        Assert.Equal(ExitCodes.InvalidInput, Run("fold", Model("resnet_tiny.onnx"), "-o", output, "--max-drift", "1e-3").Code); // needs --check
        Assert.Equal(ExitCodes.InvalidInput, Run("check", Model("resnet_tiny.onnx"), output, "--min-cosine", "2").Code);
    }

    [Fact]
    public void A_folder_run_with_a_gate_exits_4_and_junit_has_one_case_per_model()
    {
        string input = TempDir();
        File.Copy(ReluBnModel(), Path.Combine(input, "relu_bn.onnx"));
        File.Copy(Model("mlp_bn1d.onnx"), Path.Combine(input, "mlp.onnx"));
        string dir = TempDir(), junit = Path.Combine(dir, "j.xml");
        var (code, _, stderr) = Run("fold", input, "-o", Path.Combine(dir, "out"), "--require-all-folded", "--junit", junit, "-q");
        Assert.Equal(ExitCodes.GateFailed, code);
        Assert.Contains("ProducerNotFoldable", stderr);
        Assert.True(File.Exists(Path.Combine(dir, "out", "mlp.onnx")));
        Assert.False(File.Exists(Path.Combine(dir, "out", "relu_bn.onnx")));
        var xml = AssertValidJUnit(File.ReadAllText(junit));
        var cases = xml.Descendants("testcase").ToList();
        Assert.Equal(["mlp.onnx", "relu_bn.onnx"], cases.Select(c => (string)c.Attribute("name")!));
        Assert.Null(cases[0].Element("failure"));
        Assert.Contains("ProducerNotFoldable", cases[1].Element("failure")!.Value);
    }

    // ---- JUnit ----

    /// <summary>The JUnit schema that Jenkins, GitLab and the GitHub/Azure reporters accept (testsuites → testsuite →
    /// testcase with failure/error/skipped and system-out), with the count attributes matching the cases.</summary>
    static XDocument AssertValidJUnit(string xml)
    {
        var schemas = new XmlSchemaSet();
        schemas.Add(null, XmlReader.Create(Path.Combine(RepoRoot, "tests", "NormFold.Tests", "Cli", "junit.xsd")));
        var settings = new XmlReaderSettings { ValidationType = ValidationType.Schema, Schemas = schemas };
        var errors = new List<string>();
        settings.ValidationEventHandler += (_, e) => errors.Add(e.Message);
        using (var reader = XmlReader.Create(new StringReader(xml), settings)) while (reader.Read()) { }
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        var doc = XDocument.Parse(xml);
        foreach (var suite in doc.Descendants("testsuite"))
        {
            var cases = suite.Elements("testcase").ToList();
            Assert.Equal(cases.Count, (int)suite.Attribute("tests")!);
            Assert.Equal(cases.Count(c => c.Element("failure") != null), (int)suite.Attribute("failures")!);
            Assert.Equal(cases.Count(c => c.Element("error") != null), (int)suite.Attribute("errors")!);
            Assert.Equal(cases.Count(c => c.Element("skipped") != null), (int)suite.Attribute("skipped")!);
        }
        return doc;
    }

    [Fact]
    public void Junit_has_one_case_per_stage_and_a_failed_check_is_a_failure_with_its_reason()
    {
        string dir = TempDir(), junit = Path.Combine(dir, "j.xml");
        var (code, _, _) = Run("fold", Model("resnet_tiny.onnx"), "-o", Path.Combine(dir, "o.onnx"), "--check", "--atol", "0", "--rtol", "0", "--junit", junit);
        Assert.Equal(ExitCodes.CheckFailed, code);
        var doc = AssertValidJUnit(File.ReadAllText(junit));
        var cases = doc.Descendants("testcase").ToDictionary(c => (string)c.Attribute("name")!);
        Assert.Equal(["fold", "check", "audit"], cases.Keys);
        Assert.Null(cases["fold"].Element("failure"));
        Assert.Contains("beyond tolerance", (string)cases["check"].Element("failure")!.Attribute("message")!);
        Assert.Null(cases["audit"].Element("failure"));

        // Without --check the check and audit stages are skipped, not passed.
        Assert.Equal(0, Run("fold", Model("mlp_bn1d.onnx"), "-o", Path.Combine(dir, "o2.onnx"), "--junit", junit, "-q").Code);
        doc = AssertValidJUnit(File.ReadAllText(junit));
        Assert.Equal(2, doc.Descendants("skipped").Count());
    }

    // ---- Markdown ----

    [Fact]
    public void Markdown_summary_has_the_verdict_the_counts_and_each_bn_not_folded()
    {
        string dir = TempDir(), md = Path.Combine(dir, "s.md");
        Assert.Equal(0, Run("fold", ReluBnModel(), "-o", Path.Combine(dir, "o.onnx"), "--summary", md, "-q").Code);
        string text = File.ReadAllText(md);
        Assert.StartsWith("## NormFold fold: ", text);
        Assert.Contains("passed", text);
        Assert.Contains("| `bn` | BatchNormalization | replaced | ProducerNotFoldable |", text);
    }

    /// <summary>The check's line read "optimisation disable." (the option's value, not English).</summary>
    [Fact]
    public void Markdown_summary_says_how_onnx_runtime_ran()
    {
        string dir = TempDir(), md = Path.Combine(dir, "s.md");
        Assert.Equal(0, Run("fold", ReluBnModel(), "-o", Path.Combine(dir, "o.onnx"), "--check", "--summary", md, "-q").Code);
        Assert.Contains(", graph optimisations disabled.", File.ReadAllText(md));
        Assert.Equal(0, Run("check", ReluBnModel(), Path.Combine(dir, "o.onnx"), "--ort-level", "basic", "--summary", md, "-q").Code);
        Assert.Contains(", graph optimisation level basic.", File.ReadAllText(md));
    }

    // ---- HTML ----

    /// <summary>Parses the page as XML and checks it needs nothing from outside: no script, no link, no URL but the
    /// SVG namespace.</summary>
    public static XDocument AssertSelfContainedHtml(string html)
    {
        var doc = XDocument.Parse(html.Replace("<!DOCTYPE html>", ""));
        Assert.DoesNotContain(doc.Descendants(), e => e.Name.LocalName is "script" or "link" or "iframe" or "img" or "object" or "embed");
        Assert.DoesNotContain(doc.Descendants().Attributes(), a => a.Name.LocalName is "src" or "srcset" or "action" || a.Name.LocalName.StartsWith("on", StringComparison.Ordinal));
        string withoutNamespace = html.Replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        Assert.DoesNotContain("http:", withoutNamespace);
        Assert.DoesNotContain("https:", withoutNamespace);
        Assert.DoesNotContain("url(", withoutNamespace);
        Assert.DoesNotContain("@import", withoutNamespace);
        return doc;
    }

    static IEnumerable<XElement> ByClass(XDocument doc, string name, string cls) =>
        doc.Descendants().Where(e => e.Name.LocalName == name && ((string?)e.Attribute("class"))?.Split(' ').Contains(cls) == true);

    [Fact]
    public void Html_report_is_self_contained_with_the_drift_chart_histograms_decisions_and_op_counts()
    {
        string dir = TempDir(), html = Path.Combine(dir, "r.html");
        Assert.Equal(0, Run("fold", Model("resnet_tiny.onnx"), "-o", Path.Combine(dir, "o.onnx"), "--check", "--html", html, "-q").Code);
        var doc = AssertSelfContainedHtml(File.ReadAllText(html));
        // One point per compared tensor: the 12 folded convs' outputs and the output (the tensors only carried from
        // them are not compared, README); with --localize every one of the 28 shared intermediates and the output.
        Assert.Equal(13, DriftPoints(doc));
        Assert.Empty(ByClass(doc, "circle", "first-failure"));
        string every = Path.Combine(dir, "every.html");
        Assert.Equal(0, Run("fold", Model("resnet_tiny.onnx"), "-o", Path.Combine(dir, "o2.onnx"), "--check", "--localize", "--html", every, "-q").Code);
        Assert.Equal(29, DriftPoints(AssertSelfContainedHtml(File.ReadAllText(every))));
        Assert.Single(ByClass(doc, "svg", "histogram"));
        Assert.Equal(12, ByClass(doc, "table", "decisions").Single().Descendants().Count(e => e.Name.LocalName == "tr" && (string?)e.Attribute("class") == "folded"));
        var ops = ByClass(doc, "table", "ops").Single().Value;
        Assert.Contains("BatchNormalization", ops);
    }

    static int DriftPoints(System.Xml.Linq.XDocument doc) => Assert.Single(ByClass(doc, "svg", "drift")).Descendants()
        .Count(e => e.Name.LocalName == "circle" && ((string?)e.Attribute("class"))?.StartsWith("point") == true && e.Parent!.Name.LocalName == "svg");

    [Fact]
    public void Html_report_marks_the_first_tensor_to_drift()
    {
        string dir = TempDir(), html = Path.Combine(dir, "r.html");
        var (code, _, _) = Run("fold", Model("resnet_tiny.onnx"), "-o", Path.Combine(dir, "o.onnx"), "--check", "--atol", "0", "--rtol", "0", "--html", html, "-q");
        Assert.Equal(ExitCodes.CheckFailed, code);
        var doc = AssertSelfContainedHtml(File.ReadAllText(html));
        Assert.Single(ByClass(doc, "circle", "first-failure"));
        var label = Assert.Single(ByClass(doc, "text", "label"));
        Assert.StartsWith("first drift: ", label.Value);
        Assert.NotEmpty(ByClass(doc, "circle", "fail"));
    }

    [Fact]
    public void Html_report_shows_the_per_channel_findings_of_a_planted_one_channel_error()
    {
        // γ of one channel of one BN 1% off, folded: the check's channel detector flags that channel.
        var original = OnnxModel.Load(Model("resnet_tiny.onnx"));
        var proto = original.Proto.Clone();
        var gamma = proto.Graph.Initializer.Single(t => t.Name == "layers.1.bn1.weight");
        var v = original.ReadDoubles(original.Proto.Graph.Initializer.Single(t => t.Name == "layers.1.bn1.weight"));
        v[Array.IndexOf(v, v.MaxBy(Math.Abs))] *= 1.01;
        proto.Graph.Initializer[proto.Graph.Initializer.IndexOf(gamma)] = NormFold.Tensors.TensorData.Create(gamma.Name, 1, gamma.Dims, v);
        string dir = TempDir(), planted = Path.Combine(dir, "planted.onnx"), broken = Path.Combine(dir, "broken.onnx"), html = Path.Combine(dir, "r.html");
        File.WriteAllBytes(planted, Google.Protobuf.MessageExtensions.ToByteArray(proto));
        Assert.Equal(0, Run("fold", planted, "-o", broken, "-q").Code);
        var (code, stdout, _) = Run("check", Model("resnet_tiny.onnx"), broken, "--html", html, "--json", "-");
        Assert.Equal(ExitCodes.CheckFailed, code);
        AssertValid("check-report", stdout);
        var doc = AssertSelfContainedHtml(File.ReadAllText(html));
        var findings = Assert.Single(ByClass(doc, "table", "channels"));
        Assert.Contains("layers.1/bn1", findings.Value);
        Assert.Single(ByClass(doc, "circle", "first-failure"));
    }

    [Fact]
    public void Html_report_of_a_folder_and_of_check()
    {
        string input = TempDir();
        File.Copy(Model("mlp_bn1d.onnx"), Path.Combine(input, "a.onnx"));
        File.WriteAllText(Path.Combine(input, "bad.onnx"), "<not a model & not xml>");
        string dir = TempDir(), html = Path.Combine(dir, "r.html");
        Assert.Equal(ExitCodes.InvalidInput, Run("fold", input, "-o", Path.Combine(dir, "out"), "--check", "--html", html, "-q").Code);
        var doc = AssertSelfContainedHtml(File.ReadAllText(html));
        Assert.Equal(2, ByClass(doc, "details", "model").Count());
        Assert.Single(ByClass(doc, "svg", "drift"));

        string check = Path.Combine(dir, "c.html");
        Assert.Equal(0, Run("check", Model("mlp_bn1d.onnx"), Path.Combine(dir, "out", "a.onnx"), "--html", check, "-q").Code);
        doc = AssertSelfContainedHtml(File.ReadAllText(check));
        Assert.Single(ByClass(doc, "svg", "drift"));
    }

    // ---- Terminal ----

    [Fact]
    public void Terminal_tables_fit_100_columns_and_drop_columns_that_carry_nothing()
    {
        string dir = TempDir();
        var (code, stdout, _) = Run("fold", Model("resnet_tiny.onnx"), "-o", Path.Combine(dir, "o.onnx"), "--check");
        Assert.Equal(0, code);
        foreach (var line in stdout.Split('\n')) Assert.True(line.Length <= 100, $"{line.Length}: {line}");
        string header = stdout.Split('\n')[0];
        Assert.StartsWith("Node", header);
        Assert.DoesNotContain(" Op ", header);     // every anchor is a BatchNormalization
        Assert.DoesNotContain("Reason", header);   // every BN folded
        Assert.Contains("Into", header);
        var (_, mixed, _) = Run("inspect", ReluBnModel());
        Assert.Contains("Reason", mixed.Split('\n').First(l => l.StartsWith("Node")));
        // A failing check with every intermediate listed: long names wrap inside their column, the reasons below.
        string folded = Path.Combine(dir, "o.onnx");
        var (failed, text, _) = Run("check", Model("resnet_tiny.onnx"), folded, "--localize", "--atol", "0", "--rtol", "0");
        Assert.Equal(ExitCodes.CheckFailed, failed);
        foreach (var line in text.Split('\n')) Assert.True(line.Length <= 100, $"{line.Length}: {line}");
        Assert.Contains("  output: ", text);
    }
}

/// <summary>The README's command-line sections match the code: every option is documented, and the CI recipe runs.</summary>
[Collection("Console")]
public class ReadmeTests
{
    static string Readme => File.ReadAllText(Path.Combine(RepoRoot, "README.md"));

    [Fact]
    public void Every_option_of_every_command_is_in_the_readme()
    {
        string readme = Readme;
        foreach (var command in NormFold.Cli.Cli.Commands)
            foreach (var option in command.Options)
                Assert.True(readme.Contains($"`{option.Name}") || readme.Contains($", {option.Name}") || readme.Contains($"`{option.Alias}, {option.Name}"),
                    $"README does not document {command.Name} {option.Name}");
        foreach (var code in new[] { "**0**", "**1**", "**2**", "**3**", "**4**" }) Assert.Contains(code, readme);
    }

    [Fact]
    public void The_ci_recipe_runs_as_written()
    {
        string readme = Readme;
        int start = readme.IndexOf("**A CI recipe**", StringComparison.Ordinal);
        Assert.True(start >= 0);
        int open = readme.IndexOf("```sh\n", start, StringComparison.Ordinal) + 6;
        string block = readme[open..readme.IndexOf("```", open, StringComparison.Ordinal)];
        string command = string.Join(" ", block.Replace("\\\n", " ").Split('\n').Where(l => l.StartsWith("normfold ", StringComparison.Ordinal)));
        var args = System.Text.RegularExpressions.Regex.Matches(command, "\"[^\"]*\"|\\S+").Select(m => m.Value.Trim('"')).Skip(1).ToList();

        string work = TempDir();
        Directory.CreateDirectory(Path.Combine(work, "models"));
        Directory.CreateDirectory(Path.Combine(work, "reports"));
        File.Copy(Path.Combine(ModelsDir, "resnet_tiny.onnx"), Path.Combine(work, "models", "resnet_tiny.onnx"));
        File.Copy(Path.Combine(ModelsDir, "mlp_bn1d.onnx"), Path.Combine(work, "models", "mlp_bn1d.onnx"));
        string Local(string a) => a.StartsWith("${GITHUB_STEP_SUMMARY:-", StringComparison.Ordinal) ? Path.Combine(work, a[23..^1])
            : a.StartsWith("models/") || a.StartsWith("folded/") || a.StartsWith("reports/") ? Path.Combine(work, a) : a;
        var (code, _, stderr) = CliRunner.Run([.. args.Select(Local)]);
        Assert.True(code == 0, stderr);
        Assert.True(File.Exists(Path.Combine(work, "folded", "resnet_tiny.onnx")));
        ReportFormatTests.AssertValid("folder-report", File.ReadAllText(Path.Combine(work, "reports", "normfold.json")));
        ReportFormatTests.AssertSelfContainedHtml(File.ReadAllText(Path.Combine(work, "reports", "normfold.html")));
        Assert.Contains("✅", File.ReadAllText(Path.Combine(work, "reports", "normfold.md")));
        Assert.Equal(2, XDocument.Parse(File.ReadAllText(Path.Combine(work, "reports", "normfold.xml"))).Descendants("testcase").Count());
    }
}

public class LibraryReportTests
{
    [Fact]
    public void The_library_makes_the_same_reports_and_they_match_the_schemas()
    {
        string dir = TempDir(), input = Path.Combine(ModelsDir, "mlp_bn1d.onnx"), output = Path.Combine(dir, "o.onnx");
        using var model = OnnxModel.Load(input);
        var result = NormFold.Folding.Fold(model);
        ModelWriter.Save(model, output);
        using var reference = OnnxModel.Load(input);
        using var candidate = OnnxModel.Load(output);
        var check = NormFold.Verification.EquivalenceChecker.Check(reference, candidate,
            new NormFold.Verification.CheckOptions { Shapes = new Dictionary<string, long[]> { ["input"] = [4, 32] } });
        Assert.True(check.Passed);
        string json = NormFold.Reports.FoldReport.Of(input, output, result, check).ToJson();
        ReportFormatTests.AssertValid("fold-report", json);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(2, doc.RootElement.GetProperty("summary").GetProperty("folded").GetInt32());
        Assert.False(doc.RootElement.TryGetProperty("commandLine", out _));
        ReportFormatTests.AssertValid("check-report", NormFold.Reports.CheckFileReport.Of(input, output, check).ToJson());
    }
}
