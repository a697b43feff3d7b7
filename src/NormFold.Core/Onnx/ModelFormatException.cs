namespace NormFold.Onnx;

/// <summary>The model (or one of its files) is not valid input. The message names the file, node or tensor.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : Exception(message, inner);
