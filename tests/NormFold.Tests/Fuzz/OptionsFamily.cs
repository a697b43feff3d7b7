using NormFold.Rewriting;
using static NormFold.Tests.Fuzz.ProtoEdit;

namespace NormFold.Tests.Fuzz;

public static partial class Families
{
    static readonly string[] RuleNames = RuleRegistry.Phases.SelectMany(p => p.Rules).Select(x => x.Name).Distinct().ToArray();

    /// <summary>
    /// The options that change what fold writes, over a case of another family: rules switched off (--disable: the
    /// remaining rules meet patterns they never see with all on — forward folds where a backward fold is off, merges
    /// without ToMulAdd), --keep-standalone-bn, the output's weights in a data file (--external-data, --external-data-file
    /// with good and bad names), and the check's own switches on `fold --check` and `check` (--no-local-replay,
    /// --outputs-only, --localize, --iterations, --seed, --ort-level): exit 0 must still mean an equivalent output.
    /// </summary>
    static void FoldOptions(FuzzCase c, Random r)
    {
        switch (r.Next(7))
        {
            case 0 or 1: Affine(c, r); break;
            case 2: RewritePaths(c, r); break;
            case 3: BnParams(c, r); break;
            case 4: GroupNorm(c, r); break;
            case 5: LayerNorm(c, r); break;
            default: From(c, r, Pick(r, new[] { "bn", "conv", "sub", "gn", "ln" })); c.Mutation = "healthy"; break;
        }
        var tags = new List<string> { c.Mutation };
        if (r.Next(3) == 0) { c.Options.Add("--keep-standalone-bn"); tags.Add("keep-bn"); }
        if (r.Next(3) != 0)
        {
            var off = r.Next(24) switch
            {
                0 => RuleNames.ToList(),
                1 => [Pick(r, RuleNames), "NoSuchRule"],
                2 => [Pick(r, RuleNames).ToLowerInvariant()],
                _ => RuleNames.OrderBy(_ => r.Next()).Take(1 + r.Next(4)).ToList(),
            };
            if (r.Next(3) == 0) foreach (var rule in off) c.Options.AddRange(["--disable", rule]);
            else c.Options.AddRange(["--disable", string.Join(',', off)]);
            tags.Add("disable:" + (off.Count == RuleNames.Length ? "all" : string.Join('+', off)));
        }
        // Fewer folds than the family meant: exit 4 under --require-all-folded is then an allowed answer.
        if (c.Options.Any(o => o is "--disable" or "--keep-standalone-bn")) c.ExpectAllFolded = false;
        if (r.Next(2) == 0)
        {
            if (r.Next(2) == 0) { c.FoldOptions.Add("--external-data"); tags.Add("external-data"); }
            else
            {
                string name = r.Next(6) != 0 ? Pick(r, new[] { "weights.bin", "folded.onnx.data", "a b.data", "ünï.data", "model.onnx", "sub/w.data" })
                    : Pick(r, new[] { "../up.data", "{outside}/abs.data", "", "folded.onnx", "nosub/w.data", ".", "w.data/", "sub/../w.data" });
                c.FoldOptions.AddRange(["--external-data-file", name]);
                c.OutputFiles.Add(name);
                if (name.StartsWith("sub/")) c.OutputFolders.Add("sub");
                tags.Add($"external-data-file:'{name}'");
            }
        }
        if (r.Next(2) == 0)
        {
            var check = new List<string>();
            foreach (var (p, opt) in new (int, string[])[]
                     {
                         (4, ["--no-local-replay"]), (4, ["--outputs-only"]), (4, ["--localize"]), (5, ["--iterations", "2"]),
                         (5, ["--seed", "3"]), (6, ["--no-channel-drift"]), (8, ["--ort-level", Pick(r, new[] { "basic", "extended", "all" })]),
                     })
                if (r.Next(p) == 0) check.AddRange(opt);
            c.CheckOptions.AddRange(check);
            if (check.Count > 0) tags.Add("check:" + string.Join(' ', check));
        }
        // The same through a folder (the subject and its twin, two at a time), where nothing runs in a child process.
        if (!c.Risky && !c.Escapes && c.Setup.Count == 0 && r.Next(3) == 0) { c.Runs = [.. c.Runs, RunKind.FoldFolder]; tags.Add("folder"); }
        c.Mutation = string.Join(",", tags);
    }
}
