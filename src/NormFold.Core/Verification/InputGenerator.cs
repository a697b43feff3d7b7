using NormFold.Tensors;
using T = NormFold.Onnx.Proto.TensorProto.Types.DataType;

namespace NormFold.Verification;

/// <summary>A value range for generated inputs, per input name or for all (Name = null).</summary>
public sealed record ValueRange(string? Name, double Low, double High);

/// <summary>
/// Seeded random inputs matching a session's declared inputs. Dynamic dims are bound from --shape; a symbolic
/// dim shared by several inputs gets one value; an unbound dynamic dim becomes 1 and is reported.
/// </summary>
internal sealed class InputGenerator
{
    readonly IReadOnlyList<TensorSignature> _inputs;
    readonly IReadOnlyDictionary<string, long[]> _shapes;
    readonly IReadOnlyList<ValueRange> _ranges;
    readonly int _seed;

    /// <summary>Ends every note on an unbound dim (the CLI names its option there).</summary>
    public const string ShapeHint = "bind it with a shape";

    /// <summary>Notes about dims NormFold had to choose ("input 'x' dim 0 ('batch') unbound: using 1").</summary>
    public List<string> Notes { get; } = [];
    public IReadOnlyDictionary<string, long[]> ResolvedShapes { get; }

    public InputGenerator(IReadOnlyList<TensorSignature> inputs, int seed,
        IReadOnlyDictionary<string, long[]>? shapes = null, IReadOnlyList<ValueRange>? ranges = null)
    {
        _inputs = inputs;
        _seed = seed;
        _shapes = shapes ?? new Dictionary<string, long[]>();
        _ranges = ranges ?? [];
        foreach (var name in _shapes.Keys)
            if (inputs.All(i => i.Name != name))
                throw new InvalidUsageException($"a shape is given for '{name}', which is not an input of the model (inputs: {string.Join(", ", inputs.Select(i => i.Name))})");
        ResolvedShapes = ResolveShapes();
    }

    Dictionary<string, long[]> ResolveShapes()
    {
        var symbols = new Dictionary<string, long>(StringComparer.Ordinal);
        var result = new Dictionary<string, long[]>();
        // Bound inputs first: they fix the value of their symbols for the others.
        foreach (var input in _inputs)
        {
            if (!_shapes.TryGetValue(input.Name, out var given)) continue;
            if (input.UnknownRank) { result[input.Name] = given; continue; }
            if (given.Length != input.Dims.Length)
                throw new InvalidUsageException($"shape of input '{input.Name}': {given.Length} dims given, the input has rank {input.Dims.Length}");
            for (int d = 0; d < given.Length; d++)
            {
                if (input.Dims[d] >= 0 && input.Dims[d] != given[d])
                    throw new InvalidUsageException($"shape of input '{input.Name}': dim {d} is fixed at {input.Dims[d]} by the model, {given[d]} given");
                if (input.Dims[d] < 0 && !string.IsNullOrEmpty(input.Symbols[d])) symbols.TryAdd(input.Symbols[d], given[d]);
            }
            result[input.Name] = given;
        }
        foreach (var input in _inputs)
        {
            if (result.ContainsKey(input.Name)) continue;
            if (input.UnknownRank) Notes.Add($"input '{input.Name}' declares no shape: generated as a scalar ({ShapeHint})");
            var dims = new long[input.Dims.Length];
            for (int d = 0; d < dims.Length; d++)
            {
                if (input.Dims[d] >= 0) { dims[d] = input.Dims[d]; continue; }
                string symbol = input.Symbols[d];
                if (!string.IsNullOrEmpty(symbol) && symbols.TryGetValue(symbol, out long v)) { dims[d] = v; continue; }
                dims[d] = 1;
                if (!string.IsNullOrEmpty(symbol)) symbols[symbol] = 1;
                Notes.Add($"input '{input.Name}' dim {d}{(string.IsNullOrEmpty(symbol) ? "" : $" ('{symbol}')")} is dynamic and unbound: using 1 ({ShapeHint})");
            }
            result[input.Name] = dims;
        }
        return result;
    }

    public List<NamedTensor> Generate(int iteration)
    {
        var list = new List<NamedTensor>(_inputs.Count);
        foreach (var input in _inputs)
        {
            var shape = ResolvedShapes[input.Name];
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var rng = new Random(unchecked(_seed * 1_000_003 + (int)StableHash(input.Name) * 31 + iteration));
            var range = _ranges.LastOrDefault(r => r.Name == input.Name) ?? _ranges.LastOrDefault(r => r.Name is null);
            list.Add(Fill(input, shape, count, rng, range));
        }
        return list;
    }

    static NamedTensor Fill(TensorSignature input, long[] shape, long count, Random rng, ValueRange? range)
    {
        int type = input.ElementType;
        if (ElementType.IsFoldable(type))
        {
            double lo = range?.Low ?? -1, hi = range?.High ?? 1;
            var values = new double[count];
            for (long i = 0; i < count; i++) values[i] = lo + rng.NextDouble() * (hi - lo);
            return NamedTensor.FromDoubles(input.Name, type, shape, values);
        }
        int size = ElementType.Size(type);
        if (size == 0 || type is (int)T.String)
            throw new InvalidModelException($"input '{input.Name}' has element type {ElementType.Name(type)}, which NormFold cannot generate; supply its values from a file");
        var bytes = new byte[count * size];
        var (minimum, maximum) = IntegerRange(type);
        long low = (long)Math.Max(minimum, Math.Ceiling(range?.Low ?? 0));
        long high = (long)Math.Min(maximum, Math.Floor(range?.High ?? (type == (int)T.Bool ? 1 : 9)));
        if (high < low) throw new InvalidUsageException($"input '{input.Name}': value range holds no {ElementType.Name(type)} value");
        for (long i = 0; i < count; i++)
        {
            long v = rng.NextInt64(low, high + 1);
            var dest = bytes.AsSpan((int)(i * size), size);
            BitConverter.GetBytes(v).AsSpan(0, size).CopyTo(dest); // little-endian: the low bytes are the value, two's complement
        }
        return new NamedTensor(input.Name, type, shape, bytes);
    }

    static (double Min, double Max) IntegerRange(int type) => (T)type switch
    {
        T.Bool => (0, 1),
        T.Uint8 => (0, byte.MaxValue),
        T.Int8 => (sbyte.MinValue, sbyte.MaxValue),
        T.Uint16 => (0, ushort.MaxValue),
        T.Int16 => (short.MinValue, short.MaxValue),
        T.Int32 => (int.MinValue, int.MaxValue),
        T.Uint32 => (0, uint.MaxValue),
        _ => (-1e15, 1e15),
    };

    /// <summary>FNV-1a: string.GetHashCode differs between processes, and seeds must not.</summary>
    internal static uint StableHash(string s)
    {
        uint h = 2166136261;
        foreach (char c in s) { h ^= c; h *= 16777619; }
        return h;
    }
}
