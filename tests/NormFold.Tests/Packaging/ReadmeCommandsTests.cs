using System.Text.RegularExpressions;
using System.Xml.Linq;
using static NormFold.Tests.TestSupport;

namespace NormFold.Tests.Packaging;

/// <summary>The README's install, publish, pack, sample and test commands match the repository: the projects they name
/// exist, the platforms they publish for are the ones the tool packs for, the package files they name are the ones
/// the projects make, and CI runs the README's test command. (Running them from a clean clone takes minutes per
/// command: done by hand, BENCHMARKS.md §10's session.)</summary>
public class ReadmeCommandsTests
{
    static readonly string Readme = File.ReadAllText(Path.Combine(RepoRoot, "README.md"));

    static XElement Property(string project, string name) =>
        XDocument.Load(Path.Combine(RepoRoot, project)).Descendants(name).First();

    [Fact]
    public void Every_dotnet_command_names_a_project_or_solution_that_exists()
    {
        var paths = Regex.Matches(Readme, @"dotnet (?:pack|publish|test|run --project) ([A-Za-z][\w./-]*)")
            .Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.Contains("src/NormFold.Cli", paths);
        Assert.Contains("samples/FoldModel", paths);
        foreach (var p in paths)
        {
            string full = Path.Combine(RepoRoot, p);
            bool ok = p.EndsWith(".sln") ? File.Exists(full) : Directory.Exists(full) && Directory.GetFiles(full, "*.csproj").Length == 1;
            Assert.True(ok, $"README names '{p}', which is not a solution or a project folder");
        }
    }

    [Fact]
    public void The_platforms_published_for_are_the_ones_the_tool_packs_for()
    {
        var packed = Property("src/NormFold.Cli/NormFold.Cli.csproj", "ToolPackageRuntimeIdentifiers").Value.Split(';');
        var published = Regex.Matches(Readme, @"dotnet publish src/NormFold.Cli -c Release -r ([\w-]+) -o artifacts/([\w-]+)")
            .Select(m => (Rid: m.Groups[1].Value, Folder: m.Groups[2].Value)).ToList();
        Assert.Equal(packed.Order(), published.Select(p => p.Rid).Distinct().Order());
        Assert.All(published, p => Assert.Equal(p.Rid, p.Folder));
        // The native tool package: packed with -r for one of the tool's platforms (into the same folder as the rest).
        var nativeTool = Regex.Matches(Readme, @"dotnet pack src/NormFold.Cli -c Release -r ([\w-]+) -p:PublishAot=true -o artifacts/packages")
            .Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(nativeTool);
        Assert.All(nativeTool, rid => Assert.Contains(rid, packed));
        // The per-platform tool packages, listed as `normfold.linux-x64`, `.linux-arm64`, …
        foreach (var rid in packed) Assert.True(Readme.Contains($"`normfold.{rid}`") || Readme.Contains($"`.{rid}`"), rid);
    }

    [Fact]
    public void The_package_files_and_tool_name_are_the_ones_the_projects_make()
    {
        string version = Property("Directory.Build.props", "Version").Value;
        string tool = Property("src/NormFold.Cli/NormFold.Cli.csproj", "PackageId").Value;
        Assert.Equal(tool, Property("src/NormFold.Cli/NormFold.Cli.csproj", "ToolCommandName").Value);
        Assert.Contains($"`{tool}.{version}.nupkg`", Readme);
        Assert.Contains($"dotnet tool install -g {tool} --add-source artifacts/packages", Readme);
        Assert.Contains($"`{Property("src/NormFold.Core/NormFold.Core.csproj", "PackageId").Value}.{version}.nupkg`", Readme);
        Assert.Contains($"package `{Property("src/NormFold.OnnxSharp/NormFold.OnnxSharp.csproj", "PackageId").Value}`", Readme);
    }

    [Fact]
    public void The_sample_is_in_the_solution_and_CI_runs_the_readme_test_command()
    {
        Assert.Contains("FoldModel.csproj", File.ReadAllText(Path.Combine(RepoRoot, "NormFold.sln")));
        const string test = "dotnet test NormFold.sln -c Release";
        Assert.Contains(test, Readme);
        Assert.Contains(test, File.ReadAllText(Path.Combine(RepoRoot, ".ci", "run")));
    }
}
