using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// The fuzzer's own equivalence judge, independent of NormFold's checker: both models in ORT (optimisations off, one
/// thread) on the same seeded inputs; outputs compared by name with a loose tolerance (it hunts wrong answers, not
/// rounding). Non-finite elements must match in kind, except at the edges of the type's range. Top: where one model gives
/// ±Inf and the other a value of the same sign within 2^8 of overflowing, the models differ only in where a sum
/// computed in another order overflowed (a fold is exact up to rounding, and rounding there reaches ±Inf): reported as
/// <see cref="Verdict.OverflowEdge"/>, counted but not a defect. Likewise any difference of values in a model one of
/// whose own constants comes within 2^8 of overflowing: there the original's arithmetic overflows or absorbs (terms of
/// both signs overflow and the order of the sum decides between ±Inf and NaN; x + k − k is 0 for |k| ≈ 3e38, x when a
/// fold composes k − k first). Bottom: any difference in a model holding a subnormal constant is
/// <see cref="Verdict.UnderflowEdge"/> — the original's products with it keep one or two significant bits (x·1e-45/1e-45
/// is 0 or 1, the fold's composed factor gives x), a factor moved into a weight makes results ORT's kernels round or
/// flush differently (its Mul flushes them to 0, its ConvTranspose keeps them), and a later division by ±0 turns 0
/// against 1e-45 into NaN against ±Inf.
/// Elsewhere NaN against a number is always a difference.
/// </summary>
public static class Oracle
{
    public enum Verdict { NotRunnable, Equivalent, Different, CandidateFails, OverflowEdge, UnderflowEdge }

    public sealed record Result(Verdict Verdict, string Detail, bool Tight = false, bool ReferenceFinite = false);

    const long MaxElements = 4_000_000;

    /// <summary>One of x, y is ±Inf and the other a finite value of the same sign within 2^8 of the type's largest.</summary>
    static bool AtOverflowEdge(double x, double y, TensorElementType type)
    {
        if (double.IsNaN(x) || double.IsNaN(y) || double.IsFinite(x) == double.IsFinite(y) || Math.Sign(x) != Math.Sign(y)) return false;
        return Math.Abs(double.IsFinite(x) ? x : y) >= Largest(type) / 256;
    }

    static double Largest(TensorElementType type) => type switch
    {
        TensorElementType.Float16 => 65504,
        TensorElementType.Double => double.MaxValue,
        _ => float.MaxValue, // float, bfloat16
    };

    /// <summary>Some floating-point constant of the model comes within 2^8 of its type's largest value.</summary>
    public static bool ConstantsNearRangeEdge(string path) => Constants(path).NearLargest;

    /// <summary>Whether some floating-point constant of the model comes within 2^8 of its type's largest value, and
    /// whether some is subnormal (non-zero, below the type's smallest normal value).</summary>
    static (bool NearLargest, bool Subnormal) Constants(string path)
    {
        bool near = false, subnormal = false;
        try
        {
            var model = NormFold.Onnx.OnnxModel.Load(path);
            foreach (var t in model.AllTensors())
            {
                TensorElementType? type = t.DataType switch
                {
                    NormFold.Tensors.ElementType.Float => TensorElementType.Float,
                    NormFold.Tensors.ElementType.BFloat16 => TensorElementType.BFloat16,
                    NormFold.Tensors.ElementType.Float16 => TensorElementType.Float16,
                    NormFold.Tensors.ElementType.Double => TensorElementType.Double,
                    _ => null,
                };
                if (type is not { } ft) continue;
                foreach (double v in model.ReadDoubles(t))
                {
                    if (!double.IsFinite(v) || v == 0) continue;
                    near |= Math.Abs(v) >= Largest(ft) / 256;
                    subnormal |= Math.Abs(v) < SmallestNormal(ft);
                }
            }
        }
        catch (NormFold.NormFoldException) { }
        return (near, subnormal);
    }

    /// <summary>The type's smallest positive normal value: below it, ORT's kernels differ (its Mul flushes subnormal results
    /// to 0, its ConvTranspose keeps them), so moving a factor from one into the other changes them.</summary>
    static double SmallestNormal(TensorElementType type) => type switch
    {
        TensorElementType.Float16 => 6.103515625e-5,
        TensorElementType.Double => 2.2250738585072014e-308,
        _ => 1.1754943508222875e-38, // float, bfloat16
    };

    public static Result Compare(string original, string candidate, int seed, bool feedInitializers = false)
    {
        Dictionary<string, Out> reference;
        List<(string Name, OrtValue Value)> inputs;
        try
        {
            using var s = Session(original);
            inputs = Inputs(s, seed, feedInitializers);
            if (inputs.Count == 0 && s.InputMetadata.Count > 0) return new(Verdict.NotRunnable, "inputs not generable");
            reference = Run(s, inputs);
        }
        catch (Exception e) when (e is OnnxRuntimeException or NotSupportedException or ArgumentException or InvalidOperationException or OverflowException or OutOfMemoryException)
        {
            return new(Verdict.NotRunnable, e.Message.Split('\n')[0]);
        }
        try
        {
            Dictionary<string, Out> actual;
            try
            {
                using var s = Session(candidate);
                actual = Run(s, inputs);
            }
            catch (Exception e) when (e is OnnxRuntimeException or NotSupportedException or ArgumentException or InvalidOperationException)
            {
                return new(Verdict.CandidateFails, e.Message.Split('\n')[0]);
            }
            bool tight = true, finite = true, edge = false;
            Result Differs(string detail)
            {
                var (near, subnormal) = Constants(original);
                return near ? new(Verdict.OverflowEdge, detail + ", in a model whose constants reach the range's edge")
                    : subnormal ? new(Verdict.UnderflowEdge, detail + ", in a model holding a subnormal constant")
                    : new(Verdict.Different, detail);
            }
            foreach (var (name, r) in reference)
            {
                if (!actual.TryGetValue(name, out var a)) return new(Verdict.Different, $"output '{name}' missing");
                if (!r.Shape.SequenceEqual(a.Shape)) return new(Verdict.Different, $"'{name}' shape [{string.Join(',', r.Shape)}] became [{string.Join(',', a.Shape)}]");
                if (r.Type != a.Type) return new(Verdict.Different, $"'{name}' type {r.Type} became {a.Type}");
                if (r.Strings != null)
                {
                    if (!r.Strings.SequenceEqual(a.Strings!)) return new(Verdict.Different, $"'{name}' strings differ");
                    continue;
                }
                double max = 0;
                foreach (var v in r.Values!) if (double.IsFinite(v)) max = Math.Max(max, Math.Abs(v)); else finite = false;
                bool coarse = r.Type is TensorElementType.Float16 or TensorElementType.BFloat16;
                double k = coarse ? 5e-2 : 1e-3, kTight = coarse ? 1e-2 : 1e-5;
                // Differences among the subnormals are no fold's: rounding there is absolute, and flushing kernel-dependent.
                double floor = SmallestNormal(r.Type);
                for (int i = 0; i < r.Values!.Length; i++)
                {
                    double x = r.Values[i], y = a.Values![i];
                    if (!double.IsFinite(x) || !double.IsFinite(y))
                    {
                        if (!(double.IsNaN(x) && double.IsNaN(y)) && x != y)
                        {
                            if (AtOverflowEdge(x, y, r.Type)) { edge = true; continue; }
                            return Differs($"'{name}'[{i}]: {y} where the original gives {x}");
                        }
                        continue;
                    }
                    double err = Math.Abs(x - y);
                    if (r.Integral ? err != 0 : err > k * max + k * Math.Abs(x) + floor)
                        return Differs($"'{name}'[{i}]: {y:G6} where the original gives {x:G6} (max |ref| {max:G4})");
                    if (err > kTight * max + kTight * Math.Abs(x) + floor) tight = false;
                }
            }
            if (edge) return new(Verdict.OverflowEdge, "±Inf against a value within 2^8 of overflowing");
            return new(Verdict.Equivalent, "", tight, finite);
        }
        finally
        {
            foreach (var (_, v) in inputs) v.Dispose();
        }
    }

    static InferenceSession Session(string path)
    {
        using var o = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
            IntraOpNumThreads = 1,
            InterOpNumThreads = 1,
        };
        return new InferenceSession(path, o);
    }

    /// <summary>Seeded values for every input (and, with <paramref name="feedInitializers"/>, every initializer the
    /// caller may override: a fold of one would lose the override).</summary>
    static List<(string, OrtValue)> Inputs(InferenceSession s, int seed, bool feedInitializers = false)
    {
        var list = new List<(string, OrtValue)>();
        int k = 0;
        foreach (var (name, meta) in feedInitializers ? s.InputMetadata.Concat(s.OverridableInitializerMetadata) : s.InputMetadata)
        {
            if (!meta.IsTensor) throw new NotSupportedException($"input '{name}' is not a tensor");
            long[] shape = meta.Dimensions.Select(d => d < 0 ? 2L : d).ToArray();
            long n = shape.Aggregate(1L, (a, b) => a * b);
            if (n > MaxElements) throw new NotSupportedException("input too large");
            var r = new Random(seed * 31 + k++);
            double[] v = new double[n];
            for (int i = 0; i < n; i++) v[i] = r.NextDouble() * 2 - 1;
            list.Add((name, meta.ElementDataType switch
            {
                TensorElementType.Float => OrtValue.CreateTensorValueFromMemory(v.Select(x => (float)x).ToArray(), shape),
                TensorElementType.Double => OrtValue.CreateTensorValueFromMemory(v, shape),
                TensorElementType.Float16 => OrtValue.CreateTensorValueFromMemory(v.Select(x => (Float16)(float)x).ToArray(), shape),
                TensorElementType.BFloat16 => OrtValue.CreateTensorValueFromMemory(v.Select(x => (BFloat16)(float)x).ToArray(), shape),
                TensorElementType.Int64 => OrtValue.CreateTensorValueFromMemory(v.Select(x => (long)(x * 2 + 2)).ToArray(), shape),
                TensorElementType.Int32 => OrtValue.CreateTensorValueFromMemory(v.Select(x => (int)(x * 2 + 2)).ToArray(), shape),
                TensorElementType.Bool => OrtValue.CreateTensorValueFromMemory(v.Select(x => x > 0).ToArray(), shape),
                var t => throw new NotSupportedException($"input type {t}"),
            }));
        }
        return list;
    }

    sealed record Out(TensorElementType Type, long[] Shape, double[]? Values, string[]? Strings, bool Integral);

    static Dictionary<string, Out> Run(InferenceSession s, List<(string Name, OrtValue Value)> inputs)
    {
        var names = s.OutputMetadata.Keys.ToList();
        using var opts = new RunOptions();
        using var results = s.Run(opts, inputs.Select(i => i.Name).ToList(), inputs.Select(i => i.Value).ToList(), names);
        var outs = new Dictionary<string, Out>();
        for (int i = 0; i < names.Count; i++)
        {
            var v = results[i];
            if (!v.IsTensor) throw new NotSupportedException($"output '{names[i]}' is not a tensor");
            var info = v.GetTensorTypeAndShape();
            var t = info.ElementDataType;
            long[] shape = info.Shape;
            outs[names[i]] = t switch
            {
                TensorElementType.String => new(t, shape, null, v.GetStringTensorAsArray(), false),
                TensorElementType.Float => new(t, shape, v.GetTensorDataAsSpan<float>().ToArray().Select(x => (double)x).ToArray(), null, false),
                TensorElementType.Double => new(t, shape, v.GetTensorDataAsSpan<double>().ToArray(), null, false),
                TensorElementType.Float16 => new(t, shape, v.GetTensorDataAsSpan<Float16>().ToArray().Select(x => (double)(float)x).ToArray(), null, false),
                TensorElementType.BFloat16 => new(t, shape, v.GetTensorDataAsSpan<BFloat16>().ToArray().Select(x => (double)(float)x).ToArray(), null, false),
                TensorElementType.Int64 => new(t, shape, v.GetTensorDataAsSpan<long>().ToArray().Select(x => (double)x).ToArray(), null, true),
                TensorElementType.Int32 => new(t, shape, v.GetTensorDataAsSpan<int>().ToArray().Select(x => (double)x).ToArray(), null, true),
                TensorElementType.Bool => new(t, shape, v.GetTensorDataAsSpan<bool>().ToArray().Select(x => x ? 1.0 : 0).ToArray(), null, true),
                _ => throw new NotSupportedException($"output type {t}"),
            };
        }
        return outs;
    }
}
