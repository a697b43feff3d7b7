using System.Globalization;
using NormFold.Verification;

namespace NormFold.Cli.Commands;

/// <summary>Options shared by `check` and `fold --check`, and their translation into <see cref="CheckOptions"/>.</summary>
internal static class CheckSettings
{
    public static readonly OptionSpec[] Options =
    [
        new("--seed", "N", "seed for generated inputs (default 0)"),
        new("--iterations", "N", "runs with different generated inputs (default 1)"),
        new("--shape", "NAME:DxDx…", "bind an input's dynamic dims, e.g. --shape input:1x3x224x224", Repeatable: true),
        new("--value-range", "[NAME:]LO,HI", "range of generated values, for one input or (bare) for all; default -1,1 (integers 0,9)", Repeatable: true),
        new("--atol", "[NAME:]V", "absolute tolerance for one tensor (output or shared intermediate) or (bare) for all; default k·max|reference|", Repeatable: true),
        new("--rtol", "[NAME:]V", "relative tolerance for one tensor or (bare) for all; default k = 1e-4 float32, 1e-2 float16, 5e-2 bfloat16, 1e-10 double", Repeatable: true),
        new("--ort-level", "LEVEL", "ONNX Runtime graph optimisation: disable (default), basic, extended, all"),
        new("--input", "NAME=FILE.npy", "use this .npy file for an input (give one per input) instead of generated values", Repeatable: true),
        new("--inputs", "DIR", "inputs from DIR: test_data_set_N/input_K.pb (one iteration per set; output_K.pb are checked against the original), input_K.pb, or NAME.npy"),
        new("--save-outputs", "DIR", "write both models' outputs as .npy to DIR/reference and DIR/candidate (DIR/iteration_N/… past one)"),
        new("--localize", null, "also compare the intermediates only carried from a rewrite, and print every compared tensor's statistics, not only the first that drifts"),
        new("--audit-weights", null, "require every weight a fold made to equal the exact fold bit for bit; replays the fold's log, so only fold --check has one (on there by default); check notes it is skipped"),
        new("--outputs-only", null, "compare graph outputs only, not the intermediate tensors both models name"),
        new("--batch", "MIB", "memory for each batch of intermediates when the check is large (default: half the larger model's weights plus the inputs, at least 32; 0: all in one run, which needs memory for all of them)"),
        new("--no-channel-drift", null, "do not test each channel for a systematic gain or offset beyond rounding noise (README: systematic drift)"),
        new("--no-local-replay", null, "judge the rewrites end to end only: do not recompute the rewritten nodes from the original's own values (README: local replay)"),
    ];

    /// <summary>What a check run needs beyond <see cref="CheckOptions"/>: where inputs and outputs live.</summary>
    /// <param name="Quiet">No progress on stderr (-q).</param>
    public sealed record Request(CheckOptions Options, Dictionary<string, string> InputFiles, string? InputsDir, string? SaveOutputs, bool Localize, bool Quiet = true);

    /// <summary>Refuses a --save-outputs folder whose reference/, candidate/ or iteration_N/ subfolders (where outputs are
    /// saved) hold a file the command reads or writes: the models and their data files, the input .npy files or
    /// folder, the outputs and reports.</summary>
    public static void CheckSaveFolder(string command, Request request, IEnumerable<string> models, IEnumerable<string?> outputs)
    {
        if (request.SaveOutputs is not { } folder) return;
        var files = new List<string>(request.InputFiles.Values);
        if (request.InputsDir != null) files.Add(request.InputsDir);
        files.AddRange(outputs.OfType<string>());
        foreach (var model in models) files.AddRange(Printing.FilesRead(model).Keys);
        // Saved outputs go to FOLDER/reference, FOLDER/candidate and FOLDER/iteration_N/… only.
        string root = NormFold.Onnx.PathGuard.Resolve(folder);
        foreach (var f in files)
        {
            string relative = Path.GetRelativePath(root, NormFold.Onnx.PathGuard.Resolve(f));
            string first = relative.Split(Path.DirectorySeparatorChar)[0];
            if (relative == "." || first is "reference" or "candidate" || first.StartsWith("iteration_", StringComparison.Ordinal))
                throw new InvalidUsageException($"{command}: --save-outputs {folder}: would write where {f} is; choose another folder");
        }
    }

    public static Request ParseRequest(string command, ParsedArgs args)
    {
        var options = Parse(command, args);
        var files = new Dictionary<string, string>();
        foreach (var v in args.Values("--input"))
        {
            int eq = v.LastIndexOf('=');
            if (eq <= 0 || eq == v.Length - 1) throw new InvalidUsageException($"{command}: --input '{v}' must be NAME=FILE.npy");
            files[v[..eq]] = v[(eq + 1)..];
        }
        string? dir = args.Value("--inputs");
        if (dir != null && files.Count > 0) throw new InvalidUsageException($"{command}: give --input or --inputs, not both");
        bool fromFiles = dir != null || files.Count > 0;
        if (fromFiles && (args.Has("--seed") || args.Has("--value-range") || args.Has("--shape") || args.Has("--iterations")))
            throw new InvalidUsageException($"{command}: --seed, --value-range, --shape and --iterations apply to generated inputs, not to --input/--inputs");
        if (args.Has("--localize") && args.Has("--outputs-only")) throw new InvalidUsageException($"{command}: --localize needs the intermediate tensors that --outputs-only leaves out");
        return new Request(options, files, dir, args.Value("--save-outputs"), args.Has("--localize"), args.Has("--quiet"));
    }

    public static CheckOptions Parse(string command, ParsedArgs args)
    {
        int seed = args.Int(command, "--seed", 0);
        var shapes = new Dictionary<string, long[]>();
        foreach (var s in args.Values("--shape"))
        {
            int colon = s.LastIndexOf(':');
            if (colon <= 0) throw new InvalidUsageException($"{command}: --shape '{s}' must be NAME:DxDx…");
            var dims = s[(colon + 1)..].Split('x', 'X', ',');
            var parsed = new long[dims.Length];
            for (int i = 0; i < dims.Length; i++)
                if (!long.TryParse(dims[i], NumberStyles.None, CultureInfo.InvariantCulture, out parsed[i]) || parsed[i] < 1)
                    throw new InvalidUsageException($"{command}: --shape '{s}': '{dims[i]}' is not a dimension ≥ 1 (a 0 would compare nothing)");
            shapes[s[..colon]] = parsed;
        }
        var ranges = new List<ValueRange>();
        foreach (var r in args.Values("--value-range"))
        {
            var (name, text) = SplitName(r);
            var parts = text.Split(',');
            if (parts.Length != 2 || !TryDouble(parts[0], out double lo) || !TryDouble(parts[1], out double hi) || !(lo <= hi))
                throw new InvalidUsageException($"{command}: --value-range '{r}' must be [NAME:]LO,HI with LO ≤ HI");
            ranges.Add(new ValueRange(name, lo, hi));
        }
        return new CheckOptions
        {
            Seed = seed,
            Iterations = args.Int(command, "--iterations", 1, min: 1),
            Shapes = shapes,
            Ranges = ranges,
            Atol = Tolerances(command, "--atol", args),
            Rtol = Tolerances(command, "--rtol", args),
            Level = ParseLevel(command, args.Value("--ort-level")),
            InputProvenance = $"generated (seed {seed})",
            CompareIntermediates = !args.Has("--outputs-only"),
            DetectDrift = !args.Has("--no-channel-drift"),
            LocalReplay = !args.Has("--no-local-replay"),
            CompareCarried = args.Has("--localize"), // the drift's whole path
            BatchBytes = args.Int(command, "--batch", -1, min: 0) switch { -1 => 0, 0 => -1, var mib => (long)mib << 20 },
            // fold --check audits its own folds; check only when asked (other tools' folds are rarely exact).
            AuditWeights = args.Has("--audit-weights") || command == "fold",

        };
    }

    static Dictionary<string, double> Tolerances(string command, string option, ParsedArgs args)
    {
        var d = new Dictionary<string, double>();
        foreach (var v in args.Values(option))
        {
            var (name, text) = SplitName(v);
            if (!TryDouble(text, out double x) || x < 0)
                throw new InvalidUsageException($"{command}: {option} '{v}' must be [NAME:]V with V ≥ 0");
            d[name ?? ""] = x;
        }
        return d;
    }

    /// <summary>"name:value" → (name, value); a bare value → (null, value). Names may contain ':', so split at the last.</summary>
    static (string? Name, string Text) SplitName(string s)
    {
        int colon = s.LastIndexOf(':');
        return colon > 0 ? (s[..colon], s[(colon + 1)..]) : (null, s);
    }

    static bool TryDouble(string s, out double v) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v) && double.IsFinite(v);

    static OrtLevel ParseLevel(string command, string? s) => s switch
    {
        null or "disable" => OrtLevel.Disable,
        "basic" => OrtLevel.Basic,
        "extended" => OrtLevel.Extended,
        "all" => OrtLevel.All,
        _ => throw new InvalidUsageException($"{command}: --ort-level must be disable, basic, extended or all, got '{s}'"),
    };
}
