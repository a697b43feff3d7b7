using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Fuzz.ProtoEdit;

namespace NormFold.Tests.Fuzz;

public static partial class Families
{
    /// <summary>
    /// float16/bfloat16 folds the check must not call wrong: 1–3 blocks (Conv → BN, Conv → BN → Relu, a BN no producer
    /// takes → Mul + Add, a Conv with a flat channel → BN) at batches 1–16, with BN statistics of real networks'
    /// troublesome kinds: a large scale whose shift cancels the mean (t ≈ −s·μ, output near 0), a large shift, near-zero
    /// variance, a channel whose values sit a few half ulps apart. A failed `fold --check` on a fold the oracle finds
    /// within 1 % is a false alarm.
    /// </summary>
    static void HalfNumerics(FuzzCase c, Random r)
    {
        int type = r.Next(20) < 17 ? F16 : BF16;
        long op = type == BF16 ? Pick(r, new long[] { 15, 17 }) : Pick(r, new long[] { 9, 11, 13, 15, 17 });
        var g = new GraphBuilder(op, r.Next());
        c.Model = g.Proto;
        long n = Pick(r, new long[] { 1, 2, 8, 8, 16 }), ch = Pick(r, new long[] { 1, 2, 3, 8, 16, 32 }), hw = Pick(r, new long[] { 1, 2, 4, 8 });
        c.Base = $"half-{(type == F16 ? "float16" : "bfloat16")}-op{op}-{n}x{ch}x{hw}x{hw}";
        var tags = new List<string>();
        string x = g.Input("x", type, [n, ch, hw, hw]);
        int blocks = 1 + r.Next(3);
        for (int b = 0; b < blocks; b++)
        {
            // ONNX's Conv takes no bfloat16 (BatchNormalization-15 and Mul/Add do): a bfloat16 case is BNs alone.
            string kind = type == BF16 ? "bn-alone" : Pick(r, new[] { "conv-bn", "conv-bn-relu", "bn-alone", "flat-conv-bn" });
            string regime = Pick(r, new[] { "plain", "cancel", "cancel", "large-shift", "tiny-var" });
            tags.Add($"{kind}:{regime}");
            long m = kind == "bn-alone" ? ch : Pick(r, new long[] { 1, 4, 8, 16, 32 });
            string y = x;
            if (kind != "bn-alone")
            {
                long k = hw >= 3 && r.Next(2) == 0 ? 3 : 1;
                double scale = 1 / Math.Sqrt(ch * k * k);
                var w = ProtoEdit.Random(r, m * ch * k * k, -scale, scale);
                if (kind == "flat-conv-bn") for (long i = 0; i < ch * k * k; i++) w[i] = 0; // channel 0: its bias alone
                string[] ins = [x, g.Init($"w{b}", type, [m, ch, k, k], w)];
                if (kind == "flat-conv-bn" || r.Next(2) == 0) ins = [.. ins, g.Init($"cb{b}", type, [m], ProtoEdit.Random(r, m, -1, 1))];
                y = g.Node("Conv", ins, $"conv{b}", $"conv{b}", k == 3 ? [("pads", new long[] { 1, 1, 1, 1 })] : []).Output[0];
            }
            var (gamma, beta, mean, var) = BnStats(r, m, regime);
            string bn = g.Node("BatchNormalization", [y, g.Init($"bn{b}.gamma", type, [m], gamma), g.Init($"bn{b}.beta", type, [m], beta),
                g.Init($"bn{b}.mean", type, [m], mean), g.Init($"bn{b}.var", type, [m], var)], $"bn{b}", $"bn{b}", ("epsilon", 1e-5f)).Output[0];
            x = kind == "conv-bn-relu" ? g.Node("Relu", [bn], $"relu{b}", $"relu{b}").Output[0] : bn;
            ch = m;
        }
        g.Output(x, type, [n, ch, hw, hw]);
        c.Mutation = string.Join(",", tags);
        c.Runs = [RunKind.Fold, RunKind.FoldCheck, RunKind.CheckTwin];
    }

    /// <summary>γ, β, mean, var of one BN: plain; cancel (s = γ/√var of 10–100, β = s·μ + a little: t near 0 around the
    /// mean); large-shift (|β| of 10–100); tiny-var (var of 1e-6–1e-3 beside ε = 1e-5).</summary>
    static (double[], double[], double[], double[]) BnStats(Random r, long m, string regime)
    {
        double U(double lo, double hi) => lo + (hi - lo) * r.NextDouble();
        double[] gamma = new double[m], beta = new double[m], mean = new double[m], var = new double[m];
        for (int i = 0; i < m; i++)
        {
            gamma[i] = U(0.5, 2) * (r.Next(8) == 0 ? -1 : 1);
            mean[i] = U(-1, 1);
            var[i] = U(0.1, 2);
            beta[i] = U(-1, 1);
            switch (regime)
            {
                case "cancel":
                    var[i] = Math.Pow(U(10, 100) / Math.Abs(gamma[i]), -2);
                    beta[i] = gamma[i] / Math.Sqrt(var[i] + 1e-5) * mean[i] + U(-0.5, 0.5);
                    break;
                case "large-shift": beta[i] = U(10, 100) * (r.Next(2) == 0 ? -1 : 1); break;
                case "tiny-var": var[i] = Math.Pow(10, U(-6, -3)); break;
            }
        }
        return (gamma, beta, mean, var);
    }
}
