using System.Text;
using NormFold.Onnx.Proto;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// How much of a family's space a run of seeds reaches: each case's structure features (base, mutation tags, options,
/// op types, initializer types, opset, node count on a log scale) and its signature (base/mutation/options), per
/// family, legacy seeding against mixed (NORMFOLD_FUZZ_COVERAGE=N in the campaign test: N cases per family).
/// </summary>
public static class Coverage
{
    public sealed record Stats(int Cases, int Features, int Signatures, double Entropy, double TopShare);

    /// <summary>The first <paramref name="perFamily"/> cases of <paramref name="family"/> in campaign order (seeds
    /// <paramref name="seed"/>·10⁶ + i that <see cref="Families.ForSeed"/> gives the family, among every family).</summary>
    public static IEnumerable<FuzzCase> CampaignCases(Families.Family family, int seed, int perFamily, Seeding seeding)
    {
        var all = Families.All.Where(f => f.Name != "scale").ToList();
        for (int i = 0, n = 0; n < perFamily; i++)
        {
            int s = seed * 1_000_000 + i;
            if (Families.ForSeed(s, all) != family) continue;
            n++;
            yield return Families.Generate(family, s, seeding);
        }
    }

    public static IEnumerable<string> Features(FuzzCase c)
    {
        yield return "base:" + c.Base;
        foreach (var t in c.Mutation.Split(',', StringSplitOptions.RemoveEmptyEntries)) yield return "tag:" + t;
        foreach (var o in c.Options) yield return "option:" + o;
        var g = c.Model.Graph;
        if (g == null) yield break;
        foreach (var op in Ops(g).Distinct()) yield return "op:" + op;
        foreach (var t in g.Initializer.Select(t => t.DataType).Distinct()) yield return "init-type:" + t;
        foreach (var o in c.Model.OpsetImport) yield return $"opset:{o.Domain}:{o.Version}";
        yield return "nodes~2^" + (int)Math.Log2(1 + Ops(g).Count());
    }

    static IEnumerable<string> Ops(GraphProto g) =>
        g.Node.SelectMany(n => n.Attribute.Where(a => a.G != null).Select(a => a.G).Concat(n.Attribute.SelectMany(a => a.Graphs))
            .SelectMany(Ops).Prepend(n.OpType));

    public static Stats Measure(IEnumerable<FuzzCase> cases)
    {
        var features = new HashSet<string>();
        var sigs = new Dictionary<string, int>();
        int n = 0;
        foreach (var c in cases)
        {
            n++;
            features.UnionWith(Features(c));
            string sig = $"{c.Base}/{c.Mutation}/{string.Join(' ', c.Options)}";
            sigs[sig] = sigs.GetValueOrDefault(sig) + 1;
        }
        double h = -sigs.Values.Sum(k => (double)k / n * Math.Log2((double)k / n));
        return new Stats(n, features.Count, sigs.Count, h, (double)sigs.Values.Max() / n);
    }

    /// <summary>Legacy against mixed, per family: distinct features, distinct signatures, the signatures' entropy (bits)
    /// and the most common signature's share.</summary>
    public static string Table(int perFamily, int seed)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"{perFamily} cases per family, campaign seed {seed}: features / signatures / entropy (bits) / top share, legacy → mixed");
        sb.AppendLine($"{"family",-14}{"features",18}{"signatures",18}{"entropy",16}{"top share",18}");
        foreach (var f in Families.All.Where(f => f.Name != "scale"))
        {
            var a = Measure(CampaignCases(f, seed, perFamily, Seeding.Legacy));
            var b = Measure(CampaignCases(f, seed, perFamily, Seeding.Mixed));
            sb.AppendLine($"{f.Name,-14}{$"{a.Features} → {b.Features}",18}{$"{a.Signatures} → {b.Signatures}",18}" +
                          $"{$"{a.Entropy:0.00} → {b.Entropy:0.00}",16}{$"{a.TopShare:P1} → {b.TopShare:P1}",18}");
        }
        return sb.ToString();
    }
}
