using NormFold.Onnx.Proto;
using NormFold.Tensors;

namespace NormFold.Verification;

/// <summary>
/// User-supplied inputs: `--input name=file.npy`, or a folder holding ONNX's test_data_set_N/input_K.pb layout
/// (each set is one iteration), input_K.pb files directly, or .npy files named after the inputs.
/// Every tensor is checked against the model's declared type and fixed dims; a problem is an
/// <see cref="InvalidUsageException"/> naming the file or folder.
/// </summary>
internal static class InputFiles
{
    /// <summary>Inputs for each iteration, and a line saying where they came from.</summary>
    public static (List<List<NamedTensor>> Sets, string Provenance) Load(IReadOnlyList<TensorSignature> inputs,
        IReadOnlyDictionary<string, string>? files, string? folder)
    {
        var sets = new List<List<NamedTensor>>();
        string provenance;
        if (folder != null)
        {
            if (!Directory.Exists(folder)) throw new InvalidUsageException($"{folder}: folder not found");
            var dataSets = NormFoldIOException.Guard(folder, () => Directory.GetDirectories(folder, "test_data_set_*")).OrderBy(SetNumber).ToList();
            if (dataSets.Count > 0)
            {
                foreach (var d in dataSets) sets.Add(FromPbFolder(inputs, d));
                provenance = $"{dataSets.Count} test_data_set folder(s) in {folder}";
            }
            else if (Directory.GetFiles(folder, "input_*.pb").Length > 0)
            {
                sets.Add(FromPbFolder(inputs, folder));
                provenance = $"input_*.pb in {folder}";
            }
            else
            {
                var set = new List<NamedTensor>();
                foreach (var input in inputs)
                {
                    string path = Path.Combine(folder, SafeFileName(input.Name) + ".npy");
                    if (!File.Exists(path)) throw new InvalidUsageException($"{folder}: no {Path.GetFileName(path)} for input '{input.Name}' (and no test_data_set_N or input_K.pb)");
                    set.Add(Validate(input, Npy.Read(path, input.Name), path));
                }
                sets.Add(set);
                provenance = $".npy files in {folder}";
            }
        }
        else
        {
            files ??= new Dictionary<string, string>();
            foreach (var name in files.Keys)
                if (inputs.All(i => i.Name != name))
                    throw new InvalidUsageException($"a file is given for '{name}', which is not an input of the model (inputs: {string.Join(", ", inputs.Select(i => i.Name))})");
            var set = new List<NamedTensor>();
            foreach (var input in inputs)
            {
                if (!files.TryGetValue(input.Name, out var path))
                    throw new InvalidUsageException($"no file for input '{input.Name}': give a file for every input");
                set.Add(Validate(input, Npy.Read(path, input.Name), path));
            }
            sets.Add(set);
            provenance = "files: " + string.Join(", ", files.Select(kv => $"{kv.Key}={kv.Value}"));
        }
        return (sets, provenance);
    }

    /// <summary>The expected outputs a test_data_set folder holds (output_K.pb), by graph output order, for each set
    /// of <see cref="Load"/> in the same order; empty lists where a set has none.</summary>
    public static List<List<(string File, NamedTensor Tensor)>> ExpectedOutputs(string folder)
    {
        var sets = Directory.GetDirectories(folder, "test_data_set_*").OrderBy(SetNumber).ToList();
        if (sets.Count == 0) sets = [folder];
        return sets.Select(d => Directory.GetFiles(d, "output_*.pb")
            .OrderBy(f => int.TryParse(Path.GetFileNameWithoutExtension(f)["output_".Length..], out int k) ? k : int.MaxValue)
            .Select(f => (f, ReadTensor(f))).ToList()).ToList();
    }

    /// <summary>A TensorProto file as a tensor (named as stored).</summary>
    static NamedTensor ReadTensor(string file)
    {
        TensorProto t;
        try { t = TensorProto.Parser.ParseFrom(ReadFile(file)); }
        catch (Google.Protobuf.InvalidProtocolBufferException e) { throw new InvalidUsageException($"{file}: not a TensorProto ({e.Message})", e); }
        try { return new NamedTensor(t.Name, t.DataType, t.Dims.ToArray(), TensorBytes.ToRaw(t)); }
        catch (FormatException e) { throw new InvalidUsageException($"{file}: {e.Message}", e); }
    }

    static int SetNumber(string dir) => int.TryParse(Path.GetFileName(dir)["test_data_set_".Length..], out int n) ? n : int.MaxValue;

    /// <summary>input_K.pb: matched by the tensor's name when it has one, else by position K.</summary>
    static List<NamedTensor> FromPbFolder(IReadOnlyList<TensorSignature> inputs, string dir)
    {
        var files = Directory.GetFiles(dir, "input_*.pb")
            .OrderBy(f => int.TryParse(Path.GetFileNameWithoutExtension(f)["input_".Length..], out int k) ? k : int.MaxValue).ToList();
        if (files.Count != inputs.Count)
            throw new InvalidUsageException($"{dir}: {files.Count} input_K.pb file(s), the model has {inputs.Count} input(s)");
        var byName = new Dictionary<string, NamedTensor>();
        for (int k = 0; k < files.Count; k++)
        {
            var t = ReadTensor(files[k]);
            var input = t.Name.Length > 0 ? inputs.FirstOrDefault(i => i.Name == t.Name) : inputs[k];
            if (input is null) throw new InvalidUsageException($"{files[k]}: tensor '{t.Name}' is not an input of the model");
            byName[input.Name] = Validate(input, t, files[k]);
        }
        return inputs.Select(i => byName.TryGetValue(i.Name, out var v) ? v : throw new InvalidUsageException($"{dir}: no tensor for input '{i.Name}'")).ToList();
    }

    static NamedTensor Validate(TensorSignature input, NamedTensor t, string file)
    {
        if (t.ElementType != input.ElementType)
            throw new InvalidUsageException($"{file}: input '{input.Name}' is {ElementType.Name(input.ElementType)}, the file holds {ElementType.Name(t.ElementType)}");
        if (!input.Fits(t.Shape))
            throw new InvalidUsageException($"{file}: input '{input.Name}' has shape {input.ShapeText}, the file holds {t.ShapeText}");
        return t with { Name = input.Name };
    }

    static byte[] ReadFile(string path) => NormFoldIOException.Guard(path, () => File.ReadAllBytes(path));

    /// <summary>Input and output names may hold '/' or ':'; file names cannot.</summary>
    public static string SafeFileName(string name) =>
        string.Concat(name.Select(c => Path.GetInvalidFileNameChars().Contains(c) || c is ':' or '\\' ? '_' : c));
}
