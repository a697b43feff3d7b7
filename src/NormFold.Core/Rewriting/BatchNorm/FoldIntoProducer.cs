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
        return MatchProducer(g, bn, producer, p);
    }

    protected abstract Match MatchProducer(GraphIndex g, NodeProto bn, NodeProto producer, BatchNormParameters p);

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

    /// <summary>W' = W·s per channel, as a new initializer with a fresh name, and its record (computed while saving when
    /// the editor defers weight arithmetic).</summary>
    protected static ScaledWeight ScaleWeight(GraphEditor editor, TensorProto weight, ChannelLayout layout, double[] s) =>
        Affine.FoldedValues.ScaledWeight(editor, weight, layout, s, "_bnfold");

    /// <summary>b' = s·factor·b + t (see <see cref="ChannelBias"/>) as a new initializer, and its record.</summary>
    protected static FoldedBias AddBias(GraphEditor editor, string? source, string baseName, int type, long[] dims, double[] values,
        double factor, double[] s, double[] t) =>
        new(source, editor.AddInitializer(TensorData.Create("", type, dims, values), baseName), factor, s, t);

    /// <summary>Refusal unless W·s and the new bias are finite in their stored types.</summary>
    protected static Match.Refused? NonFinite(GraphIndex g, NodeProto producer, TensorProto weight, ChannelLayout layout, double[] s,
        int biasType, double[] newBias) =>
        FoldedValues.NotFinite($"the folded bias of {Attributes.Describe(producer)}", biasType, newBias)
        ?? (FoldedValues.ScaledWeightNotFinite(g.Model, weight, layout, s) is { } bad
            ? Match.Refuse(SkipReason.FoldedValueNotFinite, $"{Attributes.Describe(producer)} weight '{weight.Name}'[{bad}] times the BN's scale is not finite as {ElementType.Name(weight.DataType)}")
            : null);

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
