using NormFold.Onnx.Proto;

namespace NormFold.Tests.Fuzz;

/// <summary>What a `check` of the case's pair may answer: a pair known to differ must never pass.</summary>
public enum PairTruth { Unknown, Equivalent, Different }

/// <summary>One CLI run of a case: which command, with which extra options. FoldFolder: `fold` of the model's folder
/// (subject.onnx and its identical twin) into a folder, two at a time — the same answer as folding the subject alone.</summary>
public enum RunKind { Fold, FoldCheck, Inspect, CheckTwin, CheckPair, FoldFolder }

/// <summary>Folders of one case: the model's own folder, the output folder, and the outside world (canary).</summary>
public sealed record CaseDirs(string Root, string Model, string Out, string Outside, string Canary)
{
    public string Subject => Path.Combine(Model, "subject.onnx");
    public string Twin => Path.Combine(Model, "twin.onnx");
    public string Other => Path.Combine(Model, "other.onnx");
}

/// <summary>How a case's (family, seed) becomes its Random: <see cref="Families.CaseSeed"/>.</summary>
public enum Seeding { Legacy, Mixed }

/// <summary>
/// A hostile-but-valid model (valid protobuf, hostile content) made from a seed: regenerate it from (family, seed).
/// </summary>
public sealed class FuzzCase
{
    public required string Family { get; init; }
    public required int Seed { get; init; }
    /// <summary>Legacy: the ids recorded before the mixed seeding (`family:seed`); campaigns now make Mixed (`family:mSEED`).</summary>
    public Seeding Seeding { get; init; } = Seeding.Mixed;
    public string Base { get; set; } = "";
    public string Mutation { get; set; } = "";
    public required ModelProto Model { get; set; }
    /// <summary>The second model of a `check` pair (CheckPair runs), and what comparing it may answer.</summary>
    public ModelProto? Other { get; set; }
    public PairTruth Truth { get; set; } = PairTruth.Unknown;
    /// <summary>Extra files made after the models are written: data files, links, FIFOs.</summary>
    public List<Action<CaseDirs>> Setup { get; } = [];
    /// <summary>Options given to fold and inspect (swaps, target opset, …).</summary>
    public List<string> Options { get; } = [];
    /// <summary>Options of fold alone (fold and fold --check: the output's form); `{outside}` stands for the case's
    /// folder outside the model's and output's.</summary>
    public List<string> FoldOptions { get; } = [];
    /// <summary>The check's own options (fold --check, check).</summary>
    public List<string> CheckOptions { get; } = [];
    /// <summary>Files an exit-0 fold may write beside its output.</summary>
    public HashSet<string> OutputFiles { get; } = ["folded.onnx", "folded.onnx.data"];
    /// <summary>Folders made in a fold's output folder before it runs (for data files in a subfolder).</summary>
    public List<string> OutputFolders { get; } = [];
    public List<RunKind> Runs { get; set; } = [RunKind.Fold, RunKind.FoldCheck, RunKind.Inspect, RunKind.CheckTwin];
    /// <summary>Could kill or wedge the process (deep recursion, native crashes, FIFOs): run in a child process.</summary>
    public bool Risky { get; set; }
    /// <summary>The model names data outside its folder: succeeding means it was read.</summary>
    public bool Escapes { get; set; }
    /// <summary>Running the input in ORT in this process is unsafe or pointless.</summary>
    public bool SkipOracle { get; set; }
    public TimeSpan? Timeout { get; set; }
    /// <summary>Every BN and affine candidate of the model can fold: with --require-all-folded, exit 4 is a defect.</summary>
    public bool ExpectAllFolded { get; set; }
    /// <summary>The oracle also feeds the initializers ONNX Runtime lets a caller override (IR ≥ 4, listed as inputs).</summary>
    public bool FeedInitializers { get; set; }

    public string Id => Seeding == Seeding.Legacy ? $"{Family}:{Seed}" : $"{Family}:m{Seed}";

    /// <summary>`family:seed` (legacy seeding, the ids recorded before it changed) or `family:mSEED` (mixed).</summary>
    public static (string Family, int Seed, Seeding Seeding) ParseId(string id)
    {
        var parts = id.Trim().Split(':');
        if (parts.Length != 2) throw new ArgumentException($"fuzz case id '{id}': expected family:seed or family:mSEED");
        bool mixed = parts[1].StartsWith('m');
        return (parts[0], int.Parse(mixed ? parts[1][1..] : parts[1]), mixed ? Seeding.Mixed : Seeding.Legacy);
    }

    public override string ToString()
    {
        var options = Options.Concat(FoldOptions).Concat(CheckOptions).ToList();
        return $"{Id} ({Base}/{Mutation}{(options.Count > 0 ? " " + string.Join(' ', options) : "")})";
    }
}
