namespace NormFold.Rewriting;

/// <summary>Why a rewrite was not made. Each value is asserted by a test.</summary>
public enum SkipReason
{
    /// <summary>No neighbour to fold into: the input comes from a node no rule can fold into (or from a graph input), and
    /// for a forward fold, the output goes to such a node (or to several, or is a graph output).</summary>
    ProducerNotFoldable,
    /// <summary>The producer's output is also read by another node, which must keep seeing the un-normalised value.</summary>
    ProducerHasOtherConsumers,
    /// <summary>The producer's output is a graph output, which must keep its value.</summary>
    ProducerOutputIsGraphOutput,
    /// <summary>A BN parameter or a producer weight/bias is not a constant (or is an initializer that is also a graph input).</summary>
    ParameterNotConstant,
    /// <summary>The BN normalises with batch statistics (training_mode=1, or is_test=0 before opset 7).</summary>
    TrainingMode,
    /// <summary>BN's optional outputs (running or saved mean/variance) are read.</summary>
    OptionalOutputsUsed,
    /// <summary>The operator version is not one NormFold knows the meaning of.</summary>
    UnsupportedOpsetVersion,
    /// <summary>spatial=0 (opset ≤ 7): statistics per activation rather than per channel.</summary>
    NonSpatial,
    /// <summary>A weight or parameter has an element type other than float, double, float16, bfloat16; or a swap would not
    /// keep the tensor's precision (double LayerNorm, lowering a double GroupNormalization).</summary>
    UnsupportedDataType,
    /// <summary>γ, β, mean or var do not have one value per channel, or the producer's weights have an unexpected shape.</summary>
    ShapeMismatch,
    /// <summary>BN's channel axis (1) is not the axis the producer's weights scale (MatMul with rank ≠ 2).</summary>
    ChannelAxisMismatch,
    /// <summary>The tensor's rank is not known from the model, and the rewrite depends on it.</summary>
    UnknownRank,
    /// <summary>A parameter is NaN or infinite.</summary>
    NonFiniteParameter,
    /// <summary>var + ε ≤ 0: the BN divides by zero or by the square root of a negative number.</summary>
    NonPositiveVariance,
    /// <summary>The rule that would fold it was switched off with --disable.</summary>
    RuleDisabled,
    /// <summary>The nodes around the anchor are not the decomposition the rule recognises (named in the detail).</summary>
    PatternMismatch,
    /// <summary>InstanceNormalization's own scale is not all 1 or its bias not all 0.</summary>
    InstanceNormNotIdentity,
    /// <summary>The second Reshape does not restore the input's shape.</summary>
    ReshapeDoesNotRestore,
    /// <summary>A tensor inside the pattern is also read outside it, or is a graph output.</summary>
    IntermediateUsedOutside,
    /// <summary>The group count does not divide the channel count.</summary>
    GroupsDoNotDivideChannels,
    /// <summary>γ or β is not one value per channel (or, for GroupNormalization-18, not constant within each group).</summary>
    NotPerChannel,
    /// <summary>The operator needs a newer opset than the model imports, and raising it is not allowed or would change other nodes.</summary>
    OpsetTooLow,
    /// <summary>A value the rewrite would store (a folded weight or bias, a Mul/Add or γ/β constant) would be NaN or
    /// infinite in its stored type where its source was finite: the factors overflow it (γ = 3e38 with var = 0.01 in
    /// float, a float16 overflow past 65504).</summary>
    FoldedValueNotFinite,
    /// <summary>A shift cannot move into a convolution that pads its input: padding would apply after the shift in the
    /// original and before it in the folded model (the pads are named in the detail).</summary>
    PaddedConvolution,
    /// <summary>The rewrite would put as many nodes back as it removes (a lone shift moved through a MatMul needs an Add).</summary>
    NothingSaved,
    /// <summary>An affine op inside an activation x·f(x + k) (HardSwish, Swish, GELU): its result reaches, through elementwise
    /// ops, a node that also reads its input x, so folding it anywhere would change that other read. Never foldable:
    /// not counted as a fold candidate (<see cref="SkipReasons.IsFoldCandidate(Decision)"/>).</summary>
    PartOfActivation,
    /// <summary>BatchNormalization-14/15 with training_mode=0 (or absent) that names running_mean/running_var outputs,
    /// which exist only in training mode: ONNX rejects the node and ONNX Runtime does not load it.</summary>
    TrainingOutputsInEvalMode,
}

internal static class SkipReasons
{
    /// <summary>Reasons that only say "the anchor's neighbourhood is not this rule's pattern" (another rule may well
    /// recognise it): any other refusal is preferred when several rules refuse one anchor.</summary>
    public static bool MeansNotThisPattern(SkipReason reason) => reason is SkipReason.ProducerNotFoldable or SkipReason.PatternMismatch;

    /// <summary>Decisions that "all folded" counts: every BatchNormalization, and the per-channel affine ops
    /// (Mul/Div/Add/Sub) except those that are part of an activation (never foldable) and ops that changed no value,
    /// removed (nothing is left to fold).</summary>
    public static bool IsFoldCandidate(Decision d) => IsFoldCandidate(d.AnchorOpType, d.Reason, d.Outcome, d.Rule, d.Created.Count + d.Weights.Count);

    /// <summary>The same for a decision as the report holds it.</summary>
    public static bool IsFoldCandidate(Reports.DecisionEntry d) => IsFoldCandidate(d.AnchorOpType, d.Reason, d.Outcome, d.Rule, d.Created.Count + d.Weights.Count);

    /// <summary>Removed no-ops (x·1, x + 0 … removed by the merge) leave no node and no tensor in their place.</summary>
    static bool IsFoldCandidate(string anchorOpType, SkipReason? reason, Outcome outcome, string? rule, int madeCount) =>
        anchorOpType is "BatchNormalization" or "Mul" or "Div" or "Add" or "Sub" && reason != SkipReason.PartOfActivation
        && !(outcome == Outcome.Replaced && rule == nameof(Affine.AffineMerge) && madeCount == 0);
}
