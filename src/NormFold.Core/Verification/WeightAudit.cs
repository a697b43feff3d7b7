using NormFold.Onnx;
using NormFold.Onnx.Proto;
using NormFold.Graph;
using NormFold.Rewriting;
using NormFold.Tensors;

namespace NormFold.Verification;

/// <summary>What the weight audit found: tensors replayed, and the elements not equal to the exact computation.
/// <paramref name="Skipped"/>: records that could not be replayed (each is also counted as inexact).</summary>
public sealed record WeightAuditResult(int Tensors, long Elements, long Inexact, double MaxUlp, string? WorstTensor, IReadOnlyList<string> Skipped)
{
    public bool Passed => Inexact == 0;
}

/// <summary>
/// Replays the weight records of a fold's decision log (<see cref="Decision.Weights"/>): recomputes every tensor the
/// fold made from the original's tensors and the recorded per-channel factors, in double, rounds once to the stored type,
/// and compares the candidate's tensor with it bit for bit. Output comparisons cannot see sub-ulp errors (a float16
/// fold rounded twice, or computed in float16, drifts less than float16 execution noise); this sees every one. It
/// never guesses what a fold did: without the log there is nothing to replay.
/// </summary>
internal static class WeightAudit
{
    public static WeightAuditResult Run(OnnxModel reference, OnnxModel candidate, RewriteLog log)
    {
        var replay = new Replay(reference, candidate);
        foreach (var d in log.Decisions)
            foreach (var w in d.Weights) replay.Add(d.Graph, w);
        return replay.Run();
    }

    sealed class Replay(OnnxModel reference, OnnxModel candidate)
    {
        readonly Dictionary<(string Graph, string Name), WeightRecord> _records = [];
        readonly Dictionary<(string Graph, string Name), (TensorProto Tensor, double[] Values)> _computed = [];
        readonly Dictionary<string, (GraphProto Graph, string? Parent)> _referenceGraphs = GraphPaths.All(reference.Proto.Graph);
        readonly Dictionary<string, (GraphProto Graph, string? Parent)> _candidateGraphs = GraphPaths.All(candidate.Proto.Graph);
        readonly Dictionary<string, GraphIndex?> _referenceIndex = new(StringComparer.Ordinal);
        readonly Dictionary<string, GraphIndex?> _candidateIndex = new(StringComparer.Ordinal);
        readonly List<string> _skipped = [];
        int _tensors;
        long _elements, _inexact;
        double _maxUlp;
        string? _worst;

        public void Add(string graph, WeightRecord w) => _records[(graph, w.Result)] = w;

        public WeightAuditResult Run()
        {
            // Results a later record reads, or replaces (a BN folded into a Conv an earlier BN was folded into: the later
            // record computes both from the original), are intermediates: cleanup removed them from the candidate.
            var intermediate = new HashSet<(string, string)>();
            foreach (var ((graph, _), w) in _records)
            {
                foreach (var source in Sources(w))
                    if (_records.ContainsKey((graph, source))) intermediate.Add((graph, source));
                if (w.Replaces is { } replaced) intermediate.Add((graph, replaced));
            }
            foreach (var ((graph, name), w) in _records)
            {
                if (intermediate.Contains((graph, name))) continue;
                try { Compare(graph, w); }
                catch (AuditException e) { _skipped.Add(e.Message); _inexact++; }
            }
            return new WeightAuditResult(_tensors, _elements, _inexact, _maxUlp, _worst, _skipped);
        }

        static IEnumerable<string> Sources(WeightRecord w) => w switch
        {
            ScaledWeight s => [s.Source],
            FoldedBias { Source: { } b } => [b],
            ForwardBias f => f.Source is { } b ? [f.Weight, b] : [f.Weight],
            _ => [],
        };

        void Compare(string graph, WeightRecord w)
        {
            var (expectedTensor, _) = Expected(graph, w);
            if (Index(_candidateIndex, _candidateGraphs, candidate, graph) is not { } ci || !ci.TryGetConstant(w.Result, out var got))
                throw new AuditException($"'{w.Result}' ({graph}): the rewritten model has no such tensor");
            if (got.DataType != expectedTensor.DataType || !got.Dims.SequenceEqual(expectedTensor.Dims))
                throw new AuditException($"'{w.Result}' ({graph}): {ElementType.Name(got.DataType)} [{string.Join(",", got.Dims)}], the fold made {ElementType.Name(expectedTensor.DataType)} [{string.Join(",", expectedTensor.Dims)}]");
            var expected = expectedTensor.RawData.Span;
            var actual = candidate.RawBytes(got).ToArray();
            if (actual.Length == 0 && expected.Length > 0) actual = TensorData.Encode(got.DataType, candidate.ReadDoubles(got));
            if (actual.Length != expected.Length)
                throw new AuditException($"'{w.Result}' ({graph}): holds {actual.Length} bytes, expected {expected.Length}");
            _tensors++;
            var (bad, ulp) = Bits(expected, actual, got.DataType);
            _elements += expected.Length / ElementType.Size(got.DataType);
            _inexact += bad;
            if (bad > 0 && (ulp > _maxUlp || _worst is null)) { _maxUlp = Math.Max(ulp, _maxUlp); _worst = w.Result; }
        }

        /// <summary>The exact result of a record (rounded once to the stored type), replayed once.</summary>
        (TensorProto Tensor, double[] Values) Expected(string graph, WeightRecord w)
        {
            if (_computed.TryGetValue((graph, w.Result), out var done)) return done;
            // Sources first, without recursion (chains of folds into one Conv can be thousands long).
            var stack = new Stack<WeightRecord>();
            stack.Push(w);
            while (stack.Count > 0)
            {
                var top = stack.Peek();
                var pending = Sources(top).Where(s => !_computed.ContainsKey((graph, s)) && _records.ContainsKey((graph, s))).ToList();
                if (pending.Count > 0) { foreach (var s in pending) stack.Push(_records[(graph, s)]); continue; }
                stack.Pop();
                if (!_computed.ContainsKey((graph, top.Result))) _computed[(graph, top.Result)] = Compute(graph, top);
            }
            return _computed[(graph, w.Result)];
        }

        (TensorProto, double[]) Compute(string graph, WeightRecord w)
        {
            switch (w)
            {
                case ScaledWeight s:
                {
                    var (src, v) = Source(graph, s.Source);
                    var result = new double[v.Length];
                    for (long i = 0; i < v.Length; i++) result[i] = v[i] * s.Factors[Channel(s.Layout, i, v.Length, s.Factors.Length)];
                    return Rounded(src.DataType, src.Dims, result);
                }
                case FoldedBias b:
                {
                    int n = b.Scale.Length;
                    TensorProto? src = null;
                    double[]? v = null;
                    if (b.Source is { } name) (src, v) = Source(graph, name);
                    long srcRows = src is { Dims.Count: 2 } ? src.Dims[0] : 1, srcCols = src is null || src.Dims.Count == 0 ? 1 : src.Dims[^1];
                    long rows = srcRows;
                    var result = new double[rows * n];
                    for (long r = 0; r < rows; r++)
                        for (int c = 0; c < n; c++)
                            result[r * n + c] = v is null ? b.Shift[c] : b.Scale[c] * b.SourceFactor * v[r * srcCols + (srcCols == 1 ? 0 : c)] + b.Shift[c];
                    int type = src?.DataType ?? ResultType(graph, w);
                    return Rounded(type, src is { Dims.Count: 2 } ? [rows, n] : [n], result);
                }
                case ForwardBias f:
                {
                    // f[o] = Σ W[i]·Shift[in(i)] from 0 in element order; b'[r, o] = Scale[o]·(F·b[r, o] + f[o]) + OutShift[o].
                    var (wt, wv) = Source(graph, f.Weight);
                    var resultTensor = Index(_candidateIndex, _candidateGraphs, candidate, graph) is { } ci && ci.TryGetConstant(f.Result, out var rt) ? rt
                        : throw new AuditException($"'{f.Result}' ({graph}): the rewritten model has no such tensor");
                    int n = (int)(resultTensor.Dims.Count == 0 ? 1 : resultTensor.Dims[^1]);
                    var forward = new double[n];
                    for (long i = 0; i < wv.Length; i++)
                        forward[Channel(f.Outputs, i, wv.Length, n)] += wv[i] * f.Shift[Channel(f.Inputs, i, wv.Length, f.Shift.Length)];
                    TensorProto? src = null;
                    double[]? v = null;
                    if (f.Source is { } name) (src, v) = Source(graph, name);
                    long rows = src is { Dims.Count: 2 } ? src.Dims[0] : 1, srcCols = src is null || src.Dims.Count == 0 ? 1 : src.Dims[^1];
                    var result = new double[rows * n];
                    for (long r = 0; r < rows; r++)
                        for (int o = 0; o < n; o++)
                        {
                            double inner = v is null ? forward[o] : f.SourceFactor * v[r * srcCols + (srcCols == 1 ? 0 : o)] + forward[o];
                            result[r * n + o] = (f.Scale?[o] ?? 1.0) * inner + (f.OutShift?[o] ?? 0.0);
                        }
                    return Rounded(src?.DataType ?? wt.DataType, rows > 1 || src is { Dims.Count: 2 } ? [rows, n] : [n], result);
                }
                case NewConstant c:
                {
                    var got = Index(_candidateIndex, _candidateGraphs, candidate, graph) is { } ci && ci.TryGetConstant(c.Result, out var t) ? t : null;
                    return Rounded(got?.DataType ?? throw new AuditException($"'{c.Result}' ({graph}): the rewritten model has no such tensor"),
                        got.Dims, c.Values);
                }
                default:
                    throw new AuditException($"'{w.Result}' ({graph}): no replay for {w.GetType().Name}");
            }
        }

        int ResultType(string graph, WeightRecord w) =>
            Index(_candidateIndex, _candidateGraphs, candidate, graph) is { } ci && ci.TryGetConstant(w.Result, out var t) ? t.DataType
                : throw new AuditException($"'{w.Result}' ({graph}): the rewritten model has no such tensor");

        static long Count(GraphIndex? index, string name) =>
            index is not null && index.TryGetConstant(name, out var t) ? TensorData.ElementCount(t)
                : throw new AuditException($"'{name}': the rewritten model has no such tensor");

        /// <summary>A source tensor: the original's constant, or the exact result of an earlier record.</summary>
        (TensorProto Tensor, double[] Values) Source(string graph, string name)
        {
            if (_computed.TryGetValue((graph, name), out var done)) return done;
            if (Index(_referenceIndex, _referenceGraphs, reference, graph) is { } ri && ri.TryGetConstant(name, out var t))
                return (t, reference.ReadDoubles(t));
            throw new AuditException($"'{name}' ({graph}): not a constant of the original model");
        }

        static (TensorProto, double[]) Rounded(int type, IEnumerable<long> dims, double[] values)
        {
            var t = TensorData.Create("", type, dims.ToArray(), values);
            return (t, TensorData.ReadDoubles(t, t.RawData.Span));
        }

        static GraphIndex? Index(Dictionary<string, GraphIndex?> cache, Dictionary<string, (GraphProto Graph, string? Parent)> graphs,
            OnnxModel model, string path)
        {
            if (cache.TryGetValue(path, out var index)) return index;
            index = graphs.TryGetValue(path, out var g)
                ? new GraphIndex(g.Graph, model, g.Parent is { } parent ? Index(cache, graphs, model, parent) : null, path)
                : null;
            return cache[path] = index;
        }
    }

    sealed class AuditException(string message) : Exception(message);

    /// <summary>The channel of element <paramref name="i"/> of a tensor of <paramref name="count"/> elements (derived
    /// here independently of the folding code).</summary>
    static int Channel(ChannelLayout layout, long i, long count, int channels) => layout switch
    {
        ChannelLayout.Rows => (int)(i / (count / channels)),
        ChannelLayout.Columns => (int)(i % channels),
        ChannelLayout.TransposedConv t => TransposedChannel(t, i / (count / (t.InputChannels * t.OutputsPerGroup))),
        ChannelLayout.ConvInputs c => InputChannel(c, i / (count / (c.OutputChannels * c.InputsPerGroup))),
        _ => throw new AuditException($"no replay for layout {layout.GetType().Name}"),
    };

    /// <summary>W[i, j, …] of ConvTranspose feeds output channel (i / (Cin/g))·(M/g) + j.</summary>
    static int TransposedChannel(ChannelLayout.TransposedConv t, long ij) =>
        (int)(ij / t.OutputsPerGroup / (t.InputChannels / t.Groups) * t.OutputsPerGroup + ij % t.OutputsPerGroup);

    /// <summary>W[m, k, …] of Conv reads input channel (m / (M/g))·(C/g) + k.</summary>
    static int InputChannel(ChannelLayout.ConvInputs c, long mk) =>
        (int)(mk / c.InputsPerGroup / (c.OutputChannels / c.Groups) * c.InputsPerGroup + mk % c.InputsPerGroup);

    /// <summary>Elements whose bits differ, and the largest distance in units in the last place.</summary>
    static (long Bad, double MaxUlp) Bits(ReadOnlySpan<byte> expected, byte[] got, int type)
    {
        int size = ElementType.Size(type);
        long bad = 0;
        double max = 0;
        for (int i = 0; i < expected.Length; i += size)
        {
            if (expected.Slice(i, size).SequenceEqual(got.AsSpan(i, size))) continue;
            bad++;
            double e = Value(expected, i, type), g = Value(got, i, type);
            double ulp = UlpOf(e, type);
            max = Math.Max(max, ulp > 0 ? Math.Abs(g - e) / ulp : double.PositiveInfinity);
        }
        return (bad, max);
    }

    static double Value(ReadOnlySpan<byte> b, int i, int type) => type switch
    {
        ElementType.Float => BitConverter.ToSingle(b.Slice(i)),
        ElementType.Double => BitConverter.ToDouble(b.Slice(i)),
        ElementType.Float16 => (double)BitConverter.ToHalf(b.Slice(i)),
        _ => Rounding.FromBFloat16Bits(BitConverter.ToUInt16(b.Slice(i))),
    };

    static double UlpOf(double x, int type)
    {
        var (mantissa, minExponent) = type switch
        {
            ElementType.Float => (23, -126),
            ElementType.Double => (52, -1022),
            ElementType.Float16 => (10, -14),
            _ => (7, -126),
        };
        return Math.ScaleB(1.0, Math.Max(x == 0 ? minExponent : Math.ILogB(x), minExponent) - mantissa);
    }
}
