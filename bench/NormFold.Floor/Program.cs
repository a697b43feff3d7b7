// Parse IN with Google.Protobuf, serialise it to OUT (a new file). The least any tool that rewrites a model through
// protobuf pays as a whole process.
using Google.Protobuf;
using NormFold.Onnx.Proto;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: NormFold.Floor IN.onnx OUT.onnx");
    return 2;
}
ModelProto model;
using (var input = new FileStream(args[0], FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16)) model = ModelProto.Parser.ParseFrom(input);
using (var output = new FileStream(args[1], FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20)) model.WriteTo(output);
return 0;
