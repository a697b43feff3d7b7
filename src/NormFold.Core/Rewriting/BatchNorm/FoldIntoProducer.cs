using Google.Protobuf;
using NormFold.Graph;
using NormFold.Tensors;
using NormFold.Onnx.Proto;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// Common prelude of the rules that fold a BN into the node producing its input:
/// the producer has the expected op type, its output is read by the BN alone and is not a graph output,
/// and the BN is an eval-mode BN with usable parameters. Then the rule's own checks run.
/// </summary>
public abstract class FoldIntoProducer<TPlan> : RewriteRule<TPlan> where TPlan : Plan
{
    public override IReadOnlyCollection<string> AnchorOpTypes { get; } = ["BatchNormalization"];
    /// <summary>Op types (default domain) this rule can fold into.</summary>
    protected abstract IReadOnlyCollection<string> ProducerOpTypes { get; }

    public override Match TryMatch(RewriteContext context, NodeProto bn)
    {
        var g = context.Graph;
        var producer = g.Producer(bn.Input[0]);
        if (producer is null || !Attributes.IsDefaultDomain(producer) || !ProducerOpTypes.Contains(producer.OpType))
            return Match.Refuse(SkipReason.ProducerNotFoldable, ProducerDescription(g, bn));
        if (SoleReaderRefusal(g, bn.Input[0], bn) is { } refused) return refused;
        if (BatchNormParameters.TryRead(g, bn, out var p) is { } bnRefused) return bnRefused;
        return MatchProducer(g, bn, producer, p);
    }

    protected abstract Match MatchProducer(GraphIndex g, NodeProto bn, NodeProto producer, BatchNormParameters p);

    /// <summary>Refusal unless <paramref name="reader"/> is the only reader of the tensor and it is not a graph output.</summary>
    protected static Match.Refused? SoleReaderRefusal(GraphIndex g, string tensor, NodeProto reader)
    {
        if (g.IsGraphOutput(tensor))
            return Match.Refuse(SkipReason.ProducerOutputIsGraphOutput, $"'{tensor}' is a graph output");
        var consumers = g.Consumers(tensor);
        if (consumers.Count != 1 || !ReferenceEquals(consumers[0], reader))
        {
            var other = consumers.FirstOrDefault(c => !ReferenceEquals(c, reader));
            return Match.Refuse(SkipReason.ProducerHasOtherConsumers,
                $"'{tensor}' is also read by {(other is null ? "the same node twice" : Attributes.Describe(other))}" +
                (consumers.Count > 2 ? $" and {consumers.Count - 2} more" : ""));
        }
        return null;
    }

    public static string ProducerDescription(GraphIndex g, NodeProto bn)
    {
        string x = bn.Input[0];
        var producer = g.Producer(x);
        if (producer != null) return $"input '{x}' comes from {Attributes.Describe(producer)}";
        if (g.IsGraphInput(x)) return $"input '{x}' is a graph input";
        if (g.Defines(x)) return $"input '{x}' is an initializer";
        return $"input '{x}' comes from an enclosing graph";
    }

    /// <summary>A constant input of the producer with a floating-point type, or a refusal naming it.</summary>
    protected static Match.Refused? ConstantWeight(GraphIndex g, NodeProto producer, int slot, string role, out TensorProto tensor)
    {
        if (!g.TryGetConstant(producer.Input[slot], out tensor, out string whyNot))
            return Match.Refuse(SkipReason.ParameterNotConstant, $"{Attributes.Describe(producer)} {role}: {whyNot}");
        if (!Tensors.ElementType.IsFoldable(tensor.DataType))
            return Match.Refuse(SkipReason.UnsupportedDataType,
                $"{Attributes.Describe(producer)} {role} '{producer.Input[slot]}' is {Tensors.ElementType.Name(tensor.DataType)}");
        return null;
    }

    /// <summary>The producer's optional bias (input 2): absent, or constant with shape [channels].</summary>
    protected static Match.Refused? OptionalChannelBias(GraphIndex g, NodeProto producer, int channels, out TensorProto? bias)
    {
        bias = null;
        if (!HasInput(producer, 2)) return null;
        if (ConstantWeight(g, producer, 2, "bias", out var b) is { } refused) return refused;
        if (b.Dims.Count != 1 || b.Dims[0] != channels)
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(producer)} bias '{b.Name}' has shape {Dims(b)}, expected [{channels}]");
        bias = b;
        return null;
    }

    /// <summary>
    /// W' = W·s per channel, as a new initializer with a fresh name, and its record. When the editor defers weight
    /// arithmetic, W' is computed while the model is saved, straight into the output file (never held in memory).
    /// </summary>
    protected static ScaledWeight ScaleWeight(GraphEditor editor, TensorProto weight, ChannelLayout layout, double[] s)
    {
        var model = editor.Index.Model;
        var tensor = new TensorProto { DataType = weight.DataType, Dims = { weight.Dims } };
        if (editor.DeferWeightArithmetic && ChannelScaling.Prepare(model, weight, layout, s) is { } deferred)
            model.Defer(tensor, deferred);
        else
            tensor.RawData = UnsafeByteOperations.UnsafeWrap(ChannelScaling.Scale(model, weight, layout, s));
        return new ScaledWeight(weight.Name, editor.AddInitializer(tensor, weight.Name + "_bnfold"), layout, s);
    }

    /// <summary>b' = s·factor·b + t (see <see cref="ChannelBias"/>) as a new initializer, and its record.</summary>
    protected static FoldedBias AddBias(GraphEditor editor, string? source, string baseName, int type, long[] dims, double[] values,
        double factor, double[] s, double[] t) =>
        new(source, editor.AddInitializer(TensorData.Create("", type, dims, values), baseName), factor, s, t);

    protected static bool HasInput(NodeProto n, int slot) => n.Input.Count > slot && n.Input[slot].Length > 0;

    protected static string Dims(TensorProto t) => "[" + string.Join(",", t.Dims) + "]";

    /// <summary>Removes the BN and gives its output name to <paramref name="newProducer"/>'s first output.</summary>
    protected static void Bypass(GraphEditor editor, NodeProto bn, NodeProto newProducer)
    {
        string y = bn.Output[0];
        editor.RemoveNode(bn);
        editor.SetOutput(newProducer, 0, y);
    }
}
