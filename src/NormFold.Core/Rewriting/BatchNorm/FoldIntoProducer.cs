using Google.Protobuf;
using NormFold.Graph;
using NormFold.Tensors;
using NormFold.Onnx.Proto;
using NormFold.Rewriting.Affine;

namespace NormFold.Rewriting.BatchNorm;

/// <summary>
/// Common prelude of the rules that fold a BN into the node producing its input:
/// the producer has the expected op type, its output is read by the BN alone and is not a graph output,
/// and the BN is an eval-mode BN with usable parameters. Then the rule's own checks run.
/// </summary>
internal abstract class FoldIntoProducer<TPlan> : RewriteRule<TPlan> where TPlan : Plan
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
        return MatchProducer(context, bn, producer, p);
    }

    protected abstract Match MatchProducer(RewriteContext context, NodeProto bn, NodeProto producer, BatchNormParameters p);

    /// <summary>The producer's weights after folding the BN, composed with what earlier folds of this run did to it;
    /// the new bias, or a refusal (bias shape, values not finite in their types).</summary>
    protected static Match.Refused? Compose(RewriteContext context, NodeProto producer, TensorProto weight, TensorProto? bias, double biasFactor,
        ChannelLayout layout, long channels, BatchNormParameters p, out LinearState state, out double[] newBias, out long[] biasDims)
    {
        var g = context.Graph;
        state = LinearState.Of(context, producer, weight, bias, biasFactor, layout, channels).ThenOutput(new ChannelAffine(p.Scale, p.Shift));
        if (!state.TryBias(g.Model, out newBias, out biasDims, out string whyNot))
            return Match.Refuse(SkipReason.ShapeMismatch, $"{Attributes.Describe(producer)}: {whyNot}");
        return FoldedValues.NotFinite($"the folded bias of {Attributes.Describe(producer)}", bias?.DataType ?? weight.DataType, newBias)
            ?? state.WeightNotFinite(g.Model, producer);
    }

    /// <summary>Writes the composed weight and bias (see <see cref="LinearState.Write"/>); returns the bias name.</summary>
    protected static string Write(GraphEditor editor, NodeProto producer, LinearState state, double[] newBias, long[] biasDims, int biasType,
        List<string> created, List<WeightRecord> records, out LinearState written)
    {
        written = state.Write(editor, producer, true, newBias, biasDims, biasType, "_bnfold", created, records, out string? bias);
        return bias!;
    }

    // The checks and weight arithmetic every fold shares with the affine rules (Rewriting/Affine) live there once.

    /// <summary>Refusal unless <paramref name="reader"/> is the only reader of the tensor and it is not a graph output.</summary>
    protected static Match.Refused? SoleReaderRefusal(GraphIndex g, string tensor, NodeProto reader) =>
        Affine.AffineHead.SoleReader(g, tensor, reader);

    public static string ProducerDescription(GraphIndex g, NodeProto bn) => Affine.AffineHead.ProducerDescription(g, bn.Input[0]);

    /// <summary>A constant input of the producer with a floating-point type, or a refusal naming it.</summary>
    protected static Match.Refused? ConstantWeight(GraphIndex g, NodeProto producer, int slot, string role, out TensorProto tensor) =>
        Affine.LinearWeights.Constant(g, producer, slot, role, out tensor);

    /// <summary>The producer's optional bias (input 2): absent, or constant with shape [channels].</summary>
    protected static Match.Refused? OptionalChannelBias(GraphIndex g, NodeProto producer, int channels, out TensorProto? bias) =>
        Affine.LinearWeights.OptionalBias(g, producer, channels, out bias);

    protected static bool HasInput(NodeProto n, int slot) => Affine.LinearWeights.HasInput(n, slot);

    protected static string Dims(TensorProto t) => Affine.LinearWeights.Dims(t);

    /// <summary>Removes the BN and gives its output name to <paramref name="newProducer"/>'s first output.</summary>
    protected static void Bypass(GraphEditor editor, NodeProto bn, NodeProto newProducer)
    {
        string y = bn.Output[0];
        editor.RemoveNode(bn);
        editor.SetOutput(newProducer, 0, y);
    }
}
