using Google.Protobuf;
using NormFold.Onnx.Proto;
using NormFold.Tensors;
using NormFold.Tests.Builders;
using static NormFold.Tests.Builders.GraphBuilder;
using static NormFold.Tests.Fuzz.ProtoEdit;

namespace NormFold.Tests.Fuzz;

/// <summary>
/// Mutation families: each takes a healthy base (or builds a synthetic graph) and makes one hostile change that
/// still parses as protobuf. The mutation name says what was done; (family, seed) regenerates the case exactly.
/// </summary>
public static partial class Families
{
    public sealed record Family(string Name, int Weight, Action<FuzzCase, Random> Mutate, bool Risky = false);

    public static readonly Family[] All =
    [
        new("bn-params", 14, BnParams),
        new("weights", 10, Weights),
        new("external-data", 10, ExternalData),
        new("structure", 10, Structure),
        new("cycles", 2, Cycles, Risky: true),
        new("opset", 6, Opsets),
        new("attributes", 8, Attributes),
        new("value-info", 5, ValueInfo),
        new("subgraphs", 6, Subgraphs),
        new("groupnorm", 7, GroupNorm),
        new("layernorm", 7, LayerNorm),
        new("check-pairs", 10, CheckPairs),
        new("affine", 10, Affine),
        new("rewrite-paths", 8, RewritePaths),
        new("fold-options", 8, FoldOptions),
        new("half-numerics", 6, HalfNumerics),
        new("scale", 1, Scale, Risky: true),
    ];

    public static Family Get(string name) => All.Single(f => f.Name == name);

    /// <summary>The family a seed falls into, by weight (reproducible: a function of the seed alone).</summary>
    public static Family ForSeed(int seed, IReadOnlyList<Family> families)
    {
        int total = families.Sum(f => f.Weight);
        int k = (int)((uint)(seed * 2654435761u) % (uint)total);
        foreach (var f in families) { if (k < f.Weight) return f; k -= f.Weight; }
        throw new InvalidOperationException();
    }

    /// <summary>A case of the current seeding (<see cref="Seeding.Mixed"/>): what campaigns generate.</summary>
    public static FuzzCase Generate(Family family, int seed) => Generate(family, seed, Seeding.Mixed);

    /// <summary>Regenerates the case a recorded id names (<see cref="FuzzCase.Id"/>: `family:seed` legacy, `family:mSEED` mixed).</summary>
    public static FuzzCase Generate(string id)
    {
        var (family, seed, seeding) = FuzzCase.ParseId(id);
        return Generate(Get(family), seed, seeding);
    }

    public static FuzzCase Generate(Family family, int seed, Seeding seeding)
    {
        var r = new Random(CaseSeed(family.Name, seed, seeding));
        var c = new FuzzCase { Family = family.Name, Seed = seed, Seeding = seeding, Model = new ModelProto(), Risky = family.Risky };
        family.Mutate(c, r);
        if (c.Risky) c.SkipOracle = true;
        return c;
    }

    /// <summary>The seed of a case's Random. Legacy: the case seed itself — consecutive seeds give nearly linear first
    /// draws (.NET's seeded Random), so a family's first choices followed the seed. Mixed: SplitMix64's finaliser of
    /// (FNV-1a of the family's name, seed), so neighbouring seeds and families draw independently.</summary>
    public static int CaseSeed(string family, int seed, Seeding seeding)
    {
        if (seeding == Seeding.Legacy) return seed;
        ulong h = 14695981039346656037UL;
        foreach (char ch in family) { h ^= ch; h *= 1099511628211UL; }
        ulong z = h + (ulong)(uint)seed * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z & 0x7FFFFFFF);
    }

    static void From(FuzzCase c, Random r, params string[] tags)
    {
        var b = Bases.Pick(r, tags);
        c.Base = b.Name;
        c.Model = b.Make(r);
    }

    // ---------------------------------------------------------------------------------------------------------
    // BatchNormalization parameters and attributes
    static void BnParams(FuzzCase c, Random r)
    {
        From(c, r, "bn");
        var (g, bn) = Pick(r, Nodes(c.Model, "BatchNormalization"));
        int p = 1 + r.Next(4);
        string pname = bn.Input.Count > p ? bn.Input[p] : "";
        var found = Init(c.Model, pname);
        long ch = found?.Tensor.Dims.Count == 1 ? found.Value.Tensor.Dims[0] : 2;
        int type = found?.Tensor.DataType ?? F32;
        void Set(TensorProto t) { if (found is { } f) Replace(f.Graph, f.Tensor, t); }
        double[] Values(long n) => p == 4 ? ProtoEdit.Random(r, n, 0.1, 2) : ProtoEdit.Random(r, n);
        switch (r.Next(26))
        {
            case 0: c.Mutation = "length+1"; Set(Make(pname, type, [ch + 1], Values(ch + 1))); break;
            case 1: c.Mutation = "length-1"; Set(Make(pname, type, [ch - 1], Values(ch - 1))); break;
            case 2: c.Mutation = "length0"; Set(Make(pname, type, [0], [])); break;
            case 3: c.Mutation = "rank2"; Set(Make(pname, type, r.Next(2) == 0 ? [1, ch] : [ch, 1], Values(ch))); break;
            case 4: c.Mutation = "scalar"; Set(Make(pname, type, [], Values(1))); break;
            case 5:
                int[] types = [ElementType.Double, ElementType.Float16, ElementType.BFloat16, 7, 6, 9, 8, 2, 0, 99, 17];
                int nt = Pick(r, types);
                c.Mutation = $"type{nt}";
                Set(Make(pname, nt, [ch], Values(ch)));
                break;
            case 6 or 7:
            {
                double bad = Pick(r, new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity });
                c.Mutation = $"param{p}={bad}";
                var v = Values(ch); v[r.Next(v.Length)] = bad;
                Set(Make(pname, type, [ch], v));
                break;
            }
            case 8 or 9:
            {
                var var = Init(c.Model, bn.Input.Count > 4 ? bn.Input[4] : "");
                if (var is not { } vf) goto default;
                long n = ElementsOf(vf.Tensor);
                var v = ProtoEdit.Random(r, n, 0.1, 2);
                double bad = Pick(r, new[] { -1.0, -1e-5, 0.0, -1e30 });
                v[r.Next(v.Length)] = bad;
                if (bad == 0) SetAttr(bn, "epsilon", 0f);
                c.Mutation = $"variance={bad}";
                Replace(vf.Graph, vf.Tensor, Make(vf.Tensor.Name, vf.Tensor.DataType, [.. vf.Tensor.Dims], v));
                break;
            }
            case 10:
            {
                // γ = 3e38 with a small variance: the folded factor overflows float.
                var gamma = Init(c.Model, bn.Input.Count > 1 ? bn.Input[1] : "");
                var var = Init(c.Model, bn.Input.Count > 4 ? bn.Input[4] : "");
                if (gamma is not { } gf || var is not { } vf) goto default;
                long n = ElementsOf(gf.Tensor);
                var gv = ProtoEdit.Random(r, n); gv[r.Next(gv.Length)] = 3e38;
                c.Mutation = "gamma=3e38";
                Replace(gf.Graph, gf.Tensor, Make(gf.Tensor.Name, gf.Tensor.DataType, [.. gf.Tensor.Dims], gv));
                Replace(vf.Graph, vf.Tensor, Make(vf.Tensor.Name, vf.Tensor.DataType, [.. vf.Tensor.Dims], Enumerable.Repeat(0.01, (int)n).ToArray()));
                break;
            }
            case 11: c.Mutation = "epsilon-missing"; SetAttr(bn, "epsilon", null); break;
            case 12:
            {
                float eps = Pick(r, new[] { -1e-5f, -10f, float.NaN, float.PositiveInfinity, 0f, 1e30f, float.Epsilon });
                c.Mutation = $"epsilon={eps}"; SetAttr(bn, "epsilon", eps);
                break;
            }
            case 13:
                c.Mutation = "epsilon-wrong-type";
                SetAttr(bn, "epsilon", null); bn.Attribute.Add(WrongTyped(r, "epsilon"));
                break;
            case 14: c.Mutation = "epsilon-twice"; bn.Attribute.Add(Attr("epsilon", 0.5f)); break;
            case 15: c.Mutation = "training_mode=1"; SetAttr(bn, "training_mode", 1L); break;
            case 16:
            {
                int keep = r.Next(5);
                c.Mutation = $"inputs={keep}";
                while (bn.Input.Count > keep) bn.Input.RemoveAt(bn.Input.Count - 1);
                break;
            }
            case 17: c.Mutation = $"input{p}-empty"; bn.Input[p] = ""; break;
            case 18: c.Mutation = "no-outputs"; bn.Output.Clear(); break;
            case 19:
                c.Mutation = "training-outputs";
                bn.Output.Add("run_mean"); bn.Output.Add("run_var");
                if (r.Next(2) == 0) { bn.Output.Add("saved_mean"); bn.Output.Add("saved_var"); }
                break;
            case 20:
                c.Mutation = $"param{p}-is-graph-input";
                if (found is { } gi) c.Model.Graph.Input.Add(Info(pname, gi.Tensor.DataType, [.. gi.Tensor.Dims]));
                break;
            case 21:
            {
                // A parameter computed at run time (not a constant).
                c.Mutation = $"param{p}-computed";
                if (found is not { } f) goto default;
                string src = pname + "_src";
                f.Tensor.Name = src;
                g.Node.Insert(g.Node.IndexOf(bn), new NodeProto { OpType = "Abs", Name = "abs_" + p, Input = { src }, Output = { pname } });
                break;
            }
            case 22: c.Mutation = "spatial=0"; SetAttr(bn, "spatial", 0L); break;
            case 23: c.Mutation = "momentum-string"; SetAttr(bn, "momentum", "fast"); break;
            case 24:
            {
                // Two BNs share one parameter tensor, one of them with a different epsilon.
                c.Mutation = "shared-params";
                var twin = bn.Clone(); twin.Name += "_twin"; twin.Output[0] = (twin.Output.Count > 0 ? twin.Output[0] : "x") + "_twin";
                SetAttr(twin, "epsilon", 0.25f);
                g.Node.Add(twin);
                if (g == c.Model.Graph) c.Model.Graph.Output.Add(Info(twin.Output[0], F32, null));
                break;
            }
            case 25:
            {
                // Channel count zero: every parameter empty.
                c.Mutation = "zero-channels";
                foreach (var name in bn.Input.Skip(1))
                    if (Init(c.Model, name) is { } z) Replace(z.Graph, z.Tensor, Make(name, z.Tensor.DataType, [0], []));
                break;
            }
            default: c.Mutation = "epsilon=-1"; SetAttr(bn, "epsilon", -1f); break;
        }
    }

    static long ElementsOf(TensorProto t) => Math.Max(1, Count(t.Dims));

    // ---------------------------------------------------------------------------------------------------------
    // Weights: dims vs BN vs data length, unknown types, impossible dims, duplicates
    static void Weights(FuzzCase c, Random r)
    {
        From(c, r, "bn");
        var linear = Nodes(c.Model).Where(x => x.Node.OpType is "Conv" or "ConvTranspose" or "Gemm" or "MatMul" && x.Node.Input.Count > 1).ToList();
        var inits = Graphs(c.Model).SelectMany(g => g.Initializer.Select(t => (g, t))).ToList();
        if (inits.Count == 0) { c.Mutation = "none"; return; }
        var (gw, w) = linear.Count > 0 && r.Next(3) != 0 && Init(c.Model, Pick(r, linear).Node.Input[1]) is { } lw ? lw : Pick(r, inits);
        long[] dims = [.. w.Dims];
        int type = w.DataType;
        long n = Count(dims);
        void Set(TensorProto t) => Replace(gw, w, t);
        switch (r.Next(18))
        {
            case 0 when dims.Length > 0:
            {
                long[] d = (long[])dims.Clone();
                int axis = r.Next(d.Length);
                d[axis] = Math.Max(1, d[axis] + (r.Next(2) == 0 ? 1 : -1));
                c.Mutation = $"dims-axis{axis}={d[axis]}";
                Set(Make(w.Name, type, d, ProtoEdit.Random(r, Count(d))));
                break;
            }
            case 1:
            {
                int cut = 1 + r.Next(Math.Max(1, w.RawData.Length));
                c.Mutation = $"raw-short-{cut}";
                if (w.RawData.Length > 0) w.RawData = ByteString.CopyFrom(w.RawData.Span[..^Math.Min(cut, w.RawData.Length)]);
                else w.FloatData.Clear();
                break;
            }
            case 2:
                c.Mutation = "raw-long";
                w.RawData = ByteString.CopyFrom((byte[])[.. w.RawData.Span, .. new byte[1 + r.Next(9)]]);
                break;
            case 3:
                c.Mutation = "float_data-count";
                w.RawData = ByteString.Empty;
                w.FloatData.Clear();
                w.FloatData.AddRange(ProtoEdit.Random(r, n + (r.Next(2) == 0 ? 1 : -1)).Select(v => (float)v));
                break;
            case 4:
                c.Mutation = "raw-and-float_data";
                w.FloatData.AddRange(ProtoEdit.Random(r, n).Select(v => (float)v));
                break;
            case 5:
            {
                long bad = Pick(r, new[] { -1L, -3L, 0L });
                c.Mutation = $"dim={bad}";
                if (w.Dims.Count == 0) w.Dims.Add(bad); else w.Dims[r.Next(w.Dims.Count)] = bad;
                break;
            }
            case 6:
            {
                c.Mutation = "dims-overflow";
                w.Dims.Clear();
                w.Dims.AddRange(r.Next(2) == 0 ? [1L << 40, 1L << 40] : [long.MaxValue]);
                break;
            }
            case 7:
            {
                int nt = Pick(r, new[] { 0, 99, -1, 8, 17, 21, 23, 14, 15, 16 });
                c.Mutation = $"data_type={nt}";
                w.DataType = nt;
                break;
            }
            case 8 when dims.Length > 0:
                c.Mutation = "rank-2-weight";
                Set(Make(w.Name, type, [dims[0], Math.Max(1, n / Math.Max(1, dims[0]))], ProtoEdit.Random(r, dims[0] * Math.Max(1, n / Math.Max(1, dims[0])))));
                break;
            case 9:
                c.Mutation = "rank-6-weight";
                Set(Make(w.Name, type, ((long[])[.. dims, 1, 1, 1, 1, 1]).Take(6).ToArray(), ProtoEdit.Random(r, n)));
                break;
            case 10:
            {
                c.Mutation = "duplicate-initializer";
                var dup = Make(w.Name, type is ElementType.Float or ElementType.Double or ElementType.Float16 or ElementType.BFloat16 ? type : F32, dims, ProtoEdit.Random(r, n, -3, 3));
                if (r.Next(2) == 0) gw.Initializer.Add(dup); else gw.Initializer.Insert(0, dup);
                break;
            }
            case 11: c.Mutation = "external-without-entries"; w.DataLocation = TensorProto.Types.DataLocation.External; break;
            case 12: c.Mutation = "segment"; w.Segment = new TensorProto.Types.Segment { Begin = 0, End = Math.Max(1, n / 2) }; break;
            case 13: c.Mutation = "int64-weight"; Set(Make(w.Name, 7, dims, ProtoEdit.Random(r, n, -3, 3))); break;
            case 14: c.Mutation = "double-weight"; Set(Make(w.Name, ElementType.Double, dims, ProtoEdit.Random(r, n))); break;
            case 15: c.Mutation = "empty-name"; w.Name = ""; break;
            case 16: c.Mutation = "huge-values"; Set(Make(w.Name, type is ElementType.Float or ElementType.Double ? type : F32, dims, ProtoEdit.Random(r, n, -3e38, 3e38))); break;
            case 17: c.Mutation = "weight-is-graph-input"; c.Model.Graph.Input.Add(Info(w.Name, type, dims)); break;
            default: c.Mutation = "raw-long"; w.RawData = ByteString.CopyFrom((byte[])[.. w.RawData.Span, 0, 0, 0, 0]); break;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // External data: offsets, lengths, locations (outside the folder, links, FIFOs, devices)
    static void ExternalData(FuzzCase c, Random r)
    {
        From(c, r, "bn");
        // Move every initializer of ≥ 8 bytes (main graph) into data.bin, then damage one entry.
        var data = new MemoryStream();
        var moved = new List<TensorProto>();
        foreach (var t in c.Model.Graph.Initializer)
        {
            if (t.RawData.Length < 8) continue;
            long offset = data.Length;
            if (r.Next(3) == 0) { offset = (offset + 63) / 64 * 64; data.SetLength(offset); data.Position = offset; }
            data.Write(t.RawData.Span);
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "data.bin" });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.RawData.Length.ToString() });
            t.DataLocation = TensorProto.Types.DataLocation.External;
            t.RawData = ByteString.Empty;
            moved.Add(t);
        }
        byte[] bytes = data.ToArray();
        c.Setup.Add(d => File.WriteAllBytes(Path.Combine(d.Model, "data.bin"), bytes));
        if (moved.Count == 0) { c.Mutation = "nothing-external"; return; }
        var victim = Pick(r, moved);
        StringStringEntryProto Entry(string key) => victim.ExternalData.First(e => e.Key == key);
        long length = long.Parse(Entry("length").Value);
        void Location(string v) => Entry("location").Value = v;
        switch (r.Next(30))
        {
            case 0: c.Mutation = "offset=-1"; Entry("offset").Value = "-1"; break;
            case 1: c.Mutation = "offset-past-eof"; Entry("offset").Value = (bytes.Length + 1 + r.Next(100)).ToString(); break;
            case 2: c.Mutation = "offset-beyond-long"; Entry("offset").Value = "99999999999999999999"; break;
            case 3: c.Mutation = "offset=long.Max"; Entry("offset").Value = long.MaxValue.ToString(); break;
            case 4: c.Mutation = "offset-text"; Entry("offset").Value = Pick(r, new[] { "abc", "0x10", " 4", "1e3", "", "4.0" }); break;
            case 5: c.Mutation = "offset-unaligned"; Entry("offset").Value = Math.Max(0, bytes.Length - length - 1 - r.Next(3)).ToString(); break;
            case 6: c.Mutation = "length=0"; Entry("length").Value = "0"; break;
            case 7: c.Mutation = "length-short"; Entry("length").Value = Math.Max(1, length - 4).ToString(); break;
            case 8: c.Mutation = "length-long"; Entry("length").Value = (length + 4 + r.Next(1 << 20)).ToString(); break;
            case 9: c.Mutation = "length=-4"; Entry("length").Value = "-4"; break;
            case 10: c.Mutation = "length-missing"; victim.ExternalData.Remove(Entry("length")); break;
            case 11: c.Mutation = "location=../canary"; Location("../canary.bin"); c.Escapes = true; Canary(c, victim, length); break;
            case 12: c.Mutation = "location=absolute-canary"; c.Escapes = true; Canary(c, victim, length); c.Setup.Add(d => AbsoluteLocation(d, victim)); break;
            case 13:
                c.Mutation = "location=link-to-canary"; c.Escapes = true; Location("link.bin"); Canary(c, victim, length);
                c.Setup.Add(d => File.CreateSymbolicLink(Path.Combine(d.Model, "link.bin"), d.Canary));
                break;
            case 14:
                c.Mutation = "location=linked-folder"; c.Escapes = true; Location("sub/data.bin");
                c.Setup.Add(d =>
                {
                    File.WriteAllBytes(Path.Combine(d.Outside, "data.bin"), Canary(bytes.Length));
                    Directory.CreateSymbolicLink(Path.Combine(d.Model, "sub"), d.Outside);
                });
                break;
            case 15:
                c.Mutation = "location=fifo"; c.Risky = true; Location("fifo.bin");
                c.Setup.Add(d => MakeFifo(Path.Combine(d.Model, "fifo.bin")));
                break;
            case 16: c.Mutation = "location=/dev/zero"; c.Escapes = true; Location("/dev/zero"); break;
            case 17: c.Mutation = "location=/etc/passwd"; c.Escapes = true; Location("/etc/passwd"); Entry("length").Value = "4"; Entry("offset").Value = "0"; break;
            case 18: c.Mutation = "location-empty"; Location(""); break;
            case 19: c.Mutation = "location-missing-file"; Location("nowhere.bin"); break;
            case 20: c.Mutation = "location=folder"; Location(Pick(r, new[] { ".", "sub", "sub/" })); c.Setup.Add(d => Directory.CreateDirectory(Path.Combine(d.Model, "sub"))); break;
            case 21: c.Mutation = "location-NUL"; Location("data\0.bin"); break;
            case 22: c.Mutation = "location-long"; Location(new string('a', 300) + ".bin"); break;
            case 23: c.Mutation = "location=./data.bin"; Location("./data.bin"); break;
            case 24:
                c.Mutation = "location=sub/../data.bin"; Location("sub/../data.bin");
                c.Setup.Add(d => Directory.CreateDirectory(Path.Combine(d.Model, "sub")));
                break;
            case 25:
                c.Mutation = "location=sub/../../canary"; c.Escapes = true; Location("sub/../../canary.bin"); Canary(c, victim, length);
                c.Setup.Add(d => Directory.CreateDirectory(Path.Combine(d.Model, "sub")));
                break;
            case 26: c.Mutation = "location-twice"; victim.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = "../canary.bin" }); c.Escapes = true; break;
            case 27: c.Mutation = "location-key-missing"; victim.ExternalData.Remove(Entry("location")); break;
            case 28:
                c.Mutation = "location=inside-link"; Location("alias.bin");
                c.Setup.Add(d => File.CreateSymbolicLink(Path.Combine(d.Model, "alias.bin"), Path.Combine(d.Model, "data.bin")));
                break;
            case 29: c.Mutation = "location=/proc/self/environ"; c.Escapes = true; Location("/proc/self/environ"); break;
        }
    }

    /// <summary>Offsets into the canary that fit inside it (the read would succeed if allowed).</summary>
    static void Canary(FuzzCase c, TensorProto victim, long length)
    {
        foreach (var e in victim.ExternalData)
            if (e.Key == "offset") e.Value = "0";
    }

    public static byte[] Canary(int size)
    {
        var b = new byte[Math.Max(size, 64) + 8];
        for (int i = 0; i < b.Length; i++) b[i] = (byte)"NFCANARY"[i % 8];
        return b;
    }

    static void AbsoluteLocation(CaseDirs d, TensorProto victim)
    {
        // The model is written before Setup runs: rewrite it with the canary's absolute path.
        var m = ModelProto.Parser.ParseFrom(File.ReadAllBytes(d.Subject));
        foreach (var t in m.Graph.Initializer.Where(t => t.Name == victim.Name))
            t.ExternalData.First(e => e.Key == "location").Value = d.Canary;
        File.WriteAllBytes(d.Subject, m.ToByteArray());
        File.WriteAllBytes(d.Twin, m.ToByteArray());
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int mkfifo(string path, int mode);

    public static void MakeFifo(string path)
    {
        if (mkfifo(path, Convert.ToInt32("644", 8)) != 0) throw new IOException($"mkfifo {path} failed");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Graph structure: dangling names, duplicate producers, unproduced outputs, arity, Constant nodes
    static void Structure(FuzzCase c, Random r)
    {
        From(c, r);
        var g = c.Model.Graph;
        if (g.Node.Count == 0) { c.Mutation = "none"; return; }
        var n = Pick(r, g.Node);
        switch (r.Next(20))
        {
            case 0 when n.Input.Count > 0: c.Mutation = $"dangling-input:{n.OpType}"; n.Input[r.Next(n.Input.Count)] = "ghost"; break;
            case 1:
            {
                var target = Pick(r, g.Node.Where(x => x != n && x.Output.Count > 0).DefaultIfEmpty(n).ToList());
                if (target.Output.Count == 0) goto default;
                c.Mutation = $"duplicate-producer:{target.OpType}";
                g.Node.Insert(r.Next(g.Node.Count + 1), new NodeProto { OpType = "Identity", Name = "dup", Input = { g.Input[0].Name }, Output = { target.Output[0] } });
                break;
            }
            case 2: c.Mutation = "output-unproduced"; g.Output[0].Name = "nowhere"; break;
            case 3: c.Mutation = "output-is-input"; g.Output.Add(g.Input[0].Clone()); break;
            case 4 when n.Input.Count > 0:
            {
                int keep = r.Next(n.Input.Count);
                c.Mutation = $"too-few-inputs:{n.OpType}={keep}";
                while (n.Input.Count > keep) n.Input.RemoveAt(n.Input.Count - 1);
                break;
            }
            case 5: c.Mutation = $"too-many-inputs:{n.OpType}"; n.Input.Add(g.Input[0].Name); n.Input.Add(g.Input[0].Name); break;
            case 6:
            {
                c.Mutation = "constant-zero-values";
                AddConstantFeeding(g, n, r, new NodeProto { OpType = "Constant", Name = "k" });
                break;
            }
            case 7:
            {
                c.Mutation = "constant-two-values";
                var k = new NodeProto { OpType = "Constant", Name = "k" };
                k.Attribute.Add(Attr("value", Make("kv", F32, [1], [0.5])));
                k.Attribute.Add(Attr("value_float", 2.0f));
                AddConstantFeeding(g, n, r, k);
                break;
            }
            case 8:
            {
                c.Mutation = "constant-odd-value";
                var k = new NodeProto { OpType = "Constant", Name = "k" };
                k.Attribute.Add(r.Next(3) switch
                {
                    0 => Attr("value_ints", new long[] { 1, 2, 3 }),
                    1 => Attr("value_string", "s"),
                    _ => Attr("value", new TensorProto { Name = "kv", DataType = F32, Dims = { 2, 3 }, FloatData = { 1f } }),
                });
                AddConstantFeeding(g, n, r, k);
                break;
            }
            case 9: c.Mutation = "duplicate-graph-input"; g.Input.Add(g.Input[0].Clone()); break;
            case 10: c.Mutation = "duplicate-graph-output"; g.Output.Add(g.Output[0].Clone()); break;
            case 11: c.Mutation = "duplicate-node-name"; foreach (var x in g.Node) x.Name = "same"; break;
            case 12: c.Mutation = "empty-node-names"; foreach (var x in g.Node) x.Name = ""; break;
            case 13: c.Mutation = $"node-without-outputs:{n.OpType}"; n.Output.Clear(); break;
            case 14: c.Mutation = $"unknown-op:{n.OpType}"; n.OpType = Pick(r, new[] { "FrobOp", "batchnormalization", "" }); break;
            case 15: c.Mutation = $"custom-domain:{n.OpType}"; n.Domain = "com.example"; break;
            case 16:
            {
                c.Mutation = "unsorted";
                var nodes = g.Node.ToList(); g.Node.Clear();
                g.Node.AddRange(nodes.OrderBy(_ => r.Next()));
                break;
            }
            case 17: c.Mutation = "empty-graph"; g.Node.Clear(); break;
            case 18: c.Mutation = "no-graph-outputs"; g.Output.Clear(); break;
            case 19 when n.Output.Count > 0: c.Mutation = $"empty-output-name:{n.OpType}"; n.Output[0] = ""; break;
            default: c.Mutation = "output-unproduced"; g.Output[0].Name = "nowhere"; break;
        }
    }

    static void AddConstantFeeding(GraphProto g, NodeProto reader, Random r, NodeProto k)
    {
        k.Output.Add("k_out");
        g.Node.Insert(g.Node.IndexOf(reader), k);
        if (reader.Input.Count > 1) reader.Input[1 + r.Next(reader.Input.Count - 1)] = "k_out";
        else reader.Input.Add("k_out");
    }

    // Cycles: self loops, two-node loops, long loops (child process: recursion may overflow the stack)
    static void Cycles(FuzzCase c, Random r)
    {
        From(c, r);
        var g = c.Model.Graph;
        var withIn = g.Node.Where(n => n.Input.Count > 0 && n.Output.Count > 0).ToList();
        var n = Pick(r, withIn);
        int k = r.Next(3);
        if (k == 0) { c.Mutation = $"self-loop:{n.OpType}"; n.Input[0] = n.Output[0]; }
        else if (k == 1 || withIn.Count < 2)
        {
            c.Mutation = "two-node-loop";
            var a = new NodeProto { OpType = "Relu", Name = "loop_a", Input = { "loop_b_out" }, Output = { "loop_a_out" } };
            var b = new NodeProto { OpType = "Add", Name = "loop_b", Input = { "loop_a_out", g.Input[0].Name }, Output = { "loop_b_out" } };
            g.Node.Add(a); g.Node.Add(b);
            n.Input[0] = "loop_b_out";
        }
        else
        {
            int i = r.Next(withIn.Count - 1), j = i + 1 + r.Next(withIn.Count - 1 - i);
            c.Mutation = $"long-loop:{withIn[i].OpType}<-{withIn[j].OpType}";
            withIn[i].Input[0] = withIn[j].Output[0];
        }
        c.Timeout = TimeSpan.FromSeconds(60);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Opset imports and IR versions
    static void Opsets(FuzzCase c, Random r)
    {
        From(c, r);
        var m = c.Model;
        var def = m.OpsetImport.FirstOrDefault(o => o.Domain == "");
        switch (r.Next(12))
        {
            case 0: c.Mutation = "no-default-opset"; m.OpsetImport.Clear(); break;
            case 1: c.Mutation = "duplicate-default-opset"; m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Pick(r, new long[] { 1, 7, 13, 21 }) }); break;
            case 2:
            {
                long v = Pick(r, new long[] { 0, -1, 1, 5, 6, 10000, long.MaxValue, long.MinValue });
                c.Mutation = $"opset={v}"; if (def != null) def.Version = v;
                break;
            }
            case 3: c.Mutation = "ai.onnx-domain"; if (def != null) def.Domain = "ai.onnx"; break;
            case 4: c.Mutation = "both-default-domains"; m.OpsetImport.Add(new OperatorSetIdProto { Domain = "ai.onnx", Version = 7 }); break;
            case 5:
            {
                long v = Pick(r, new long[] { 0, -1, 1, 2, 3, 100, long.MaxValue });
                c.Mutation = $"ir_version={v}"; m.IrVersion = v;
                break;
            }
            case 6: c.Mutation = "extra-domains"; m.OpsetImport.Add(new OperatorSetIdProto { Domain = "ai.onnx.ml", Version = 3 }); m.OpsetImport.Add(new OperatorSetIdProto { Domain = "com.microsoft", Version = 1 }); break;
            case 7:
            {
                long t = Pick(r, new long[] { 0, -1, 7, 13, 17, 21, 23, 99, 1000 });
                c.Mutation = $"target-opset={t}";
                c.Options.AddRange([Pick(r, new[] { "--swap-groupnorm", "--swap-layernorm" }), "--target-opset", t.ToString()]);
                break;
            }
            case 8:
            {
                // A newer opset than the model was written for: BN lost `spatial`, gained `training_mode`.
                long v = Pick(r, new long[] { 6, 7, 9, 14, 15, 21, 22, 23, 24 });
                c.Mutation = $"relabel-opset={v}"; if (def != null) def.Version = v;
                break;
            }
            case 9: c.Mutation = "opset-empty-domain-version0"; m.OpsetImport.Insert(0, new OperatorSetIdProto { Domain = "", Version = 0 }); break;
            case 10: c.Mutation = "function-shadowing-op"; m.Functions.Add(new FunctionProto { Name = "BatchNormalization", Domain = "", Input = { "a" }, Output = { "b" }, Node = { new NodeProto { OpType = "Identity", Input = { "a" }, Output = { "b" } } } }); break;
            default: c.Mutation = "ir_version=0"; m.IrVersion = 0; break;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Attributes of the linear producers (group, pads, strides, trans…)
    static void Attributes(FuzzCase c, Random r)
    {
        From(c, r, Pick(r, new[] { "conv", "convt", "bn" }));
        var cands = Nodes(c.Model).Where(x => x.Node.OpType is "Conv" or "ConvTranspose" or "Gemm" or "BatchNormalization").ToList();
        var (_, n) = Pick(r, cands);
        int spatial = Math.Max(1, (Init(c.Model, n.Input.Count > 1 ? n.Input[1] : "")?.Tensor.Dims.Count ?? 4) - 2);
        switch (n.OpType, r.Next(10))
        {
            case ("ConvTranspose", 0 or 1):
                c.Mutation = "convtranspose-group=0"; SetAttr(n, "group", 0L);
                // SIGFPE inside ORT: only in a child process, never in this one's oracle.
                c.Risky = true; c.SkipOracle = true;
                break;
            case ("Conv" or "ConvTranspose", 2):
            {
                long gv = Pick(r, new long[] { 0, -1, 3, 1000, long.MinValue });
                c.Mutation = $"{n.OpType}-group={gv}"; SetAttr(n, "group", gv);
                if (gv == 0 || n.OpType == "ConvTranspose") { c.Risky = true; c.SkipOracle = true; }
                break;
            }
            case ("Conv" or "ConvTranspose", 3):
                c.Mutation = "pads-negative"; SetAttr(n, "pads", Enumerable.Repeat(-1L, 2 * spatial).ToArray()); break;
            case ("Conv" or "ConvTranspose", 4):
                c.Mutation = "pads-wrong-length"; SetAttr(n, "pads", new long[] { 1, 1, 1 }); break;
            case ("Conv" or "ConvTranspose", 5):
            {
                long s = Pick(r, new long[] { 0, -1, 100 });
                c.Mutation = $"strides={s}"; SetAttr(n, "strides", Enumerable.Repeat(s, spatial).ToArray());
                if (s <= 0) { c.Risky = true; c.SkipOracle = true; }
                break;
            }
            case ("Conv" or "ConvTranspose", 6):
                c.Mutation = "dilations=0"; SetAttr(n, "dilations", Enumerable.Repeat(0L, spatial).ToArray()); c.Risky = true; c.SkipOracle = true; break;
            case ("Conv" or "ConvTranspose", 7):
                c.Mutation = "kernel_shape-mismatch"; SetAttr(n, "kernel_shape", Enumerable.Repeat(7L, spatial).ToArray()); break;
            case ("Conv" or "ConvTranspose", 8):
                c.Mutation = "auto_pad-bogus"; SetAttr(n, "auto_pad", "BOGUS"); break;
            case ("Gemm", 0 or 1 or 2):
            {
                long t = Pick(r, new long[] { 2, -1, 5 });
                string which = Pick(r, new[] { "transA", "transB" });
                c.Mutation = $"{which}={t}"; SetAttr(n, which, t);
                break;
            }
            case ("Gemm", 3 or 4):
            {
                float v = Pick(r, new[] { float.NaN, 0f, float.PositiveInfinity, -1f });
                string which = Pick(r, new[] { "alpha", "beta" });
                c.Mutation = $"{which}={v}"; SetAttr(n, which, v);
                break;
            }
            default:
            {
                string name = n.OpType switch { "Gemm" => Pick(r, new[] { "alpha", "transB" }), "BatchNormalization" => "epsilon", _ => Pick(r, new[] { "group", "pads", "strides" }) };
                c.Mutation = $"{n.OpType}.{name}-wrong-type";
                SetAttr(n, name, null);
                n.Attribute.Add(WrongTyped(r, name));
                break;
            }
        }
    }

    // value_info and declared graph input/output shapes that contradict the graph
    static void ValueInfo(FuzzCase c, Random r)
    {
        From(c, r, Pick(r, new[] { "bn", "gn", "ln" }));
        var g = c.Model.Graph;
        var internals = g.Node.SelectMany(n => n.Output).Where(o => o.Length > 0 && g.Output.All(x => x.Name != o)).ToList();
        string target = internals.Count > 0 ? Pick(r, internals) : g.Output[0].Name;
        switch (r.Next(7))
        {
            case 0: c.Mutation = "value_info-rank2"; g.ValueInfo.Add(Info(target, F32, [1, 2])); break;
            case 1: c.Mutation = "value_info-rank1"; g.ValueInfo.Add(Info(target, F32, [7])); break;
            case 2: c.Mutation = "value_info-rank6"; g.ValueInfo.Add(Info(target, F32, [1, 1, 1, 1, 1, 1])); break;
            case 3: c.Mutation = "value_info-type-double"; g.ValueInfo.Add(Info(target, ElementType.Double, null)); break;
            case 4: c.Mutation = "value_info-negative-dim"; g.ValueInfo.Add(Info(target, F32, [1, -5, 2])); g.ValueInfo[^1].Type.TensorType.Shape.Dim[1].DimValue = -5; break;
            case 5:
            {
                c.Mutation = "output-declared-wrong";
                var o = g.Output[0];
                o.Type = Info(o.Name, F32, [9, 9]).Type;
                break;
            }
            default:
            {
                c.Mutation = "every-value_info-wrong-rank";
                foreach (var t in internals) g.ValueInfo.Add(Info(t, F32, Enumerable.Repeat(2L, 1 + r.Next(5)).ToArray()));
                break;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // If/Loop bodies
    static void Subgraphs(FuzzCase c, Random r)
    {
        From(c, r, "sub");
        var (_, ctl) = Nodes(c.Model).First(x => x.Node.OpType is "If" or "Loop");
        var attrs = ctl.Attribute.Where(a => a.G != null).ToList();
        var a = Pick(r, attrs);
        var body = a.G;
        switch (r.Next(12))
        {
            case 0: c.Mutation = $"{a.Name}-missing"; ctl.Attribute.Remove(a); break;
            case 1: c.Mutation = $"{a.Name}-wrong-type"; ctl.Attribute[ctl.Attribute.IndexOf(a)] = Attr(a.Name, 1L); break;
            case 2: c.Mutation = "body-extra-output"; body.Output.Add(body.Output[^1].Clone()); break;
            case 3: c.Mutation = "body-no-outputs"; body.Output.Clear(); break;
            case 4: c.Mutation = "body-dangling"; Pick(r, body.Node).Input[0] = "ghost"; break;
            case 5:
            {
                c.Mutation = "body-bn-param-length";
                var bn = body.Node.First(n => n.OpType == "BatchNormalization");
                if (Init(c.Model, bn.Input[1]) is { } f) Replace(f.Graph, f.Tensor, Make(f.Tensor.Name, F32, [f.Tensor.Dims[0] + 1], ProtoEdit.Random(r, f.Tensor.Dims[0] + 1)));
                break;
            }
            case 6: c.Mutation = "body-input-dropped"; if (body.Input.Count > 0) body.Input.RemoveAt(body.Input.Count - 1); break;
            case 7:
            {
                c.Mutation = "body-shadows-outer";
                var n = Pick(r, body.Node.Where(x => x.OpType == "Relu" || x.OpType == "Conv").DefaultIfEmpty(body.Node[0]).ToList());
                n.Output[0] = c.Model.Graph.Input[0].Name;
                break;
            }
            case 8:
            {
                c.Mutation = "body-cycle"; c.Risky = true;
                var n = body.Node[^1]; n.Input[0] = n.Output[0];
                break;
            }
            case 9: c.Mutation = "graph-attr-on-relu"; c.Model.Graph.Node.Add(new NodeProto { OpType = "Relu", Name = "odd", Input = { c.Model.Graph.Input[0].Name }, Output = { "odd_out" }, Attribute = { Attr("body", body.Clone()) } }); break;
            case 10:
            {
                // Bodies nested 300 deep: recursion over subgraphs must not overflow.
                c.Mutation = "nested-300"; c.Risky = true;
                var inner = body;
                for (int i = 0; i < 300; i++)
                {
                    var wrap = new GraphProto { Name = $"wrap{i}" };
                    // The else branch stays small (a clone of the then branch would double the model at every level).
                    var other = new GraphProto { Name = $"else{i}", Output = { inner.Output[0].Clone() } };
                    other.Node.Add(new NodeProto { OpType = "Identity", Name = $"else_id{i}", Input = { c.Model.Graph.Input[0].Name }, Output = { inner.Output[0].Name } });
                    wrap.Node.Add(new NodeProto { OpType = "If", Name = $"if{i}", Input = { "cond" }, Output = { inner.Output[0].Name }, Attribute = { Attr("then_branch", inner), Attr("else_branch", other) } });
                    wrap.Output.Add(inner.Output[0].Clone());
                    inner = wrap;
                }
                a.G = inner;
                break;
            }
            default: c.Mutation = "body-bn-epsilon-negative"; foreach (var n in body.Node.Where(n => n.OpType == "BatchNormalization")) SetAttr(n, "epsilon", -1f); break;
        }
        if (c.Risky) c.Timeout = TimeSpan.FromSeconds(60);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Decomposed GroupNorm and LayerNorm with one thing changed, swapped with various target opsets
    static readonly long[] Targets = [0, 0, 17, 18, 21, 21, 22, 23, 7, 99];

    static void SwapOptions(FuzzCase c, Random r, string swap)
    {
        c.Options.Add(swap);
        long t = Pick(r, Targets);
        if (t != 0) c.Options.AddRange(["--target-opset", t.ToString()]);
        if (r.Next(4) == 0) c.Options.Add("--lower-groupnorm");
    }

    /// <summary>Appends an op whose meaning changed across opsets after the output, so raising the opset matters.</summary>
    static void OpsetSensitiveTail(FuzzCase c, Random r)
    {
        var g = c.Model.Graph;
        var o = g.Output[0];
        long op = c.Model.OpsetImport.FirstOrDefault(x => x.Domain == "")?.Version ?? 0;
        string tail = o.Name + "_tail";
        switch (r.Next(3))
        {
            case 0: g.Node.Add(new NodeProto { OpType = "Softmax", Name = "softmax", Input = { o.Name }, Output = { tail }, Attribute = { Attr("axis", 1L) } }); c.Mutation += "+softmax"; break;
            case 1 when op < 11: g.Node.Add(new NodeProto { OpType = "Clip", Name = "clip", Input = { o.Name }, Output = { tail }, Attribute = { Attr("min", -0.5f), Attr("max", 0.5f) } }); c.Mutation += "+clip-attrs"; break;
            default: g.Node.Add(new NodeProto { OpType = "ReduceSum", Name = "rsum", Input = { o.Name }, Output = { tail }, Attribute = { Attr("axes", new long[] { 1 }) } }); c.Mutation += "+reducesum"; break;
        }
        o.Name = tail;
        o.Type.TensorType.Shape = null;
    }

    static void GroupNorm(FuzzCase c, Random r)
    {
        From(c, r, "gn");
        SwapOptions(c, r, "--swap-groupnorm");
        var g = c.Model.Graph;
        var inorm = Nodes(c.Model, "InstanceNormalization").Select(x => x.Node).ToList();
        var inode = Pick(r, inorm);
        var reshape1 = g.Node.FirstOrDefault(n => n.Output.Contains(inode.Input[0]));
        var mul = g.Node.FirstOrDefault(n => n.OpType == "Mul");
        switch (r.Next(12))
        {
            case 0:
            {
                c.Mutation = "group-shape-changed";
                if (reshape1 != null && Init(c.Model, reshape1.Input[1]) is { } s)
                    Replace(s.Graph, s.Tensor, Make(s.Tensor.Name, 7, [Pick(r, new long[] { 2, 4 })], Pick(r, new[] { new double[] { 0, -1 }, new double[] { 1, 1, -1, 1 }, new double[] { 0, 3, -1, 0 } })));
                break;
            }
            case 1:
            {
                c.Mutation = "in-scale-not-one";
                if (Init(c.Model, inode.Input[1]) is { } s) Replace(s.Graph, s.Tensor, Make(s.Tensor.Name, s.Tensor.DataType, [.. s.Tensor.Dims], ProtoEdit.Random(r, Count(s.Tensor.Dims), 0.5, 2)));
                break;
            }
            case 2:
            {
                c.Mutation = "in-scale-length";
                if (Init(c.Model, inode.Input[1]) is { } s) Replace(s.Graph, s.Tensor, Make(s.Tensor.Name, s.Tensor.DataType, [Count(s.Tensor.Dims) + 1], Enumerable.Repeat(1.0, (int)Count(s.Tensor.Dims) + 1).ToArray()));
                break;
            }
            case 3:
            {
                float eps = Pick(r, new[] { -1e-5f, 0f, float.NaN, 1e30f });
                c.Mutation = $"in-epsilon={eps}"; SetAttr(inode, "epsilon", eps);
                break;
            }
            case 4: c.Mutation = "in-epsilon-wrong-type"; SetAttr(inode, "epsilon", null); inode.Attribute.Add(WrongTyped(r, "epsilon")); break;
            case 5 when mul != null:
            {
                var gm = mul.Input.Select(i => Init(c.Model, i)).FirstOrDefault(x => x != null);
                if (gm is not { } gf) goto default;
                long ch = gf.Tensor.Dims.Count > 0 ? gf.Tensor.Dims[0] : 1;
                long[] d = Pick(r, new[] { new long[] { ch }, [1, ch, 1, 1], [ch, 1], [ch + 1, 1, 1], [1] });
                c.Mutation = $"gamma-shape=[{string.Join(',', d)}]";
                Replace(gf.Graph, gf.Tensor, Make(gf.Tensor.Name, gf.Tensor.DataType, d, ProtoEdit.Random(r, Count(d), 0.5, 1.5)));
                break;
            }
            case 6 when mul != null: c.Mutation = "mul-operands-swapped"; (mul.Input[0], mul.Input[1]) = (mul.Input[1], mul.Input[0]); break;
            case 7:
            {
                c.Mutation = "restore-shape-constant";
                var reshape2 = g.Node.FirstOrDefault(n => n.OpType == "Reshape" && n.Input.Contains(inode.Output[0]));
                if (reshape2 == null) goto default;
                var x = g.Input[0].Type.TensorType.Shape?.Dim.Select(d => d.DimValue).ToArray() ?? [1, 4, 3, 3];
                long[] wrong = x.Length >= 4 ? [x[0], x[1], x[2] * x[3], 1] : [x[0], x.Length > 1 ? x[1] : 1, -1];
                g.Initializer.Add(Make("restore", 7, [wrong.Length], wrong.Select(v => (double)v).ToArray()));
                reshape2.Input[1] = "restore";
                break;
            }
            case 8: c.Mutation = "value_info-wrong-rank"; g.ValueInfo.Add(Info(inode.Output[0], F32, [1, 2])); g.ValueInfo.Add(Info(g.Output[0].Name, F32, [2, 8, 144, 1])); break;
            case 9: c.Mutation = "in-output-also-graph-output"; g.Output.Add(Info(inode.Output[0], F32, null)); break;
            case 10: c.Mutation = "opset-tail"; OpsetSensitiveTail(c, r); break;
            default:
            {
                long v = Pick(r, new long[] { 6, 9, 11, 18, 21 });
                c.Mutation = $"opset-relabel={v}";
                foreach (var o in c.Model.OpsetImport.Where(o => o.Domain == "")) o.Version = v;
                break;
            }
        }
    }

    static void LayerNorm(FuzzCase c, Random r)
    {
        From(c, r, "ln");
        SwapOptions(c, r, "--swap-layernorm");
        var g = c.Model.Graph;
        var means = Nodes(c.Model, "ReduceMean").Select(x => x.Node).ToList();
        var mean = Pick(r, means);
        var pow = g.Node.FirstOrDefault(n => n.OpType == "Pow");
        switch (r.Next(12))
        {
            case 0:
            {
                long[] axes = Pick(r, new[] { new long[] { -2 }, [1], [0], [-1, -2], [-3, -1], [5] });
                c.Mutation = $"axes=[{string.Join(',', axes)}]";
                if (mean.Attribute.Any(a => a.Name == "axes")) SetAttr(mean, "axes", axes);
                else if (mean.Input.Count > 1 && Init(c.Model, mean.Input[1]) is { } a) Replace(a.Graph, a.Tensor, Make(a.Tensor.Name, 7, [axes.Length], axes.Select(v => (double)v).ToArray()));
                break;
            }
            case 1: c.Mutation = "keepdims=0"; SetAttr(mean, "keepdims", 0L); break;
            case 2 when pow != null:
            {
                double e = Pick(r, new[] { 3.0, 2.0001, 1.0, 0.5, double.NaN });
                c.Mutation = $"exponent={e}";
                if (Init(c.Model, pow.Input[1]) is { } p) Replace(p.Graph, p.Tensor, Make(p.Tensor.Name, p.Tensor.DataType, [.. p.Tensor.Dims], [e]));
                break;
            }
            case 3:
            {
                var add = g.Node.FirstOrDefault(n => n.OpType == "Add" && n.Input.Any(i => Init(c.Model, i) is { } t && Count(t.Tensor.Dims) == 1));
                double eps = Pick(r, new[] { -1e-5, 0, double.NaN, 1e30 });
                c.Mutation = $"epsilon={eps}";
                if (add != null && add.Input.Select(i => Init(c.Model, i)).FirstOrDefault(x => x is { } t && Count(t.Tensor.Dims) == 1) is { } e)
                    Replace(e.Graph, e.Tensor, Make(e.Tensor.Name, e.Tensor.DataType, [.. e.Tensor.Dims], [eps]));
                break;
            }
            case 4:
            {
                var mul = g.Node.LastOrDefault(n => n.OpType == "Mul");
                var gm = mul?.Input.Select(i => Init(c.Model, i)).FirstOrDefault(x => x != null);
                if (gm is not { } gf) goto default;
                long last = gf.Tensor.Dims.Count > 0 ? gf.Tensor.Dims[^1] : 1;
                long[] d = Pick(r, new[] { new long[] { last + 1 }, [last, 1], [1], [2, last] });
                c.Mutation = $"gamma-shape=[{string.Join(',', d)}]";
                Replace(gf.Graph, gf.Tensor, Make(gf.Tensor.Name, gf.Tensor.DataType, d, ProtoEdit.Random(r, Count(d), 0.5, 1.5)));
                break;
            }
            case 5:
            {
                var div = g.Node.FirstOrDefault(n => n.OpType == "Div");
                if (div == null) goto default;
                c.Mutation = "div-operands-swapped"; (div.Input[0], div.Input[1]) = (div.Input[1], div.Input[0]);
                break;
            }
            case 6:
            {
                var sub = g.Node.FirstOrDefault(n => n.OpType == "Sub");
                if (sub == null) goto default;
                c.Mutation = "sub-operands-swapped"; (sub.Input[0], sub.Input[1]) = (sub.Input[1], sub.Input[0]);
                break;
            }
            case 7: c.Mutation = "value_info-wrong-rank"; g.ValueInfo.Add(Info(mean.Output[0], F32, [1])); g.ValueInfo.Add(Info(g.Input[0].Name + "_none", F32, [1])); g.Input[0].Type.TensorType.Shape = null; break;
            case 8: c.Mutation = "mean-output-also-graph-output"; g.Output.Add(Info(mean.Output[0], F32, null)); break;
            case 9: c.Mutation = "opset-tail"; OpsetSensitiveTail(c, r); break;
            case 10:
            {
                c.Mutation = "input-rank-unknown";
                g.Input[0].Type.TensorType.Shape = null;
                break;
            }
            default:
            {
                long v = Pick(r, new long[] { 1, 9, 13, 17, 18 });
                c.Mutation = $"opset-relabel={v}";
                foreach (var o in c.Model.OpsetImport.Where(o => o.Domain == "")) o.Version = v;
                break;
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Pairs for `check`: mismatched inputs, outputs, types, shapes; and odd tensors (empty, string, scalar)
    static void CheckPairs(FuzzCase c, Random r)
    {
        From(c, r, "bn");
        var other = c.Model.Clone();
        var g = other.Graph;
        c.Runs = [RunKind.CheckPair, RunKind.CheckTwin];
        c.Truth = PairTruth.Different;
        string output = g.Output[0].Name;
        void Tail(NodeProto n, string declaredName, int type, long[]? dims)
        {
            g.Output[0].Name += "_pre";
            foreach (var x in g.Node) for (int i = 0; i < x.Output.Count; i++) if (x.Output[i] == output) x.Output[i] = output + "_pre";
            foreach (var x in g.Node) for (int i = 0; i < x.Input.Count; i++) if (x.Input[i] == output) x.Input[i] = output + "_pre";
            n.Input[0] = output + "_pre"; n.Output.Add(output);
            g.Node.Add(n);
            g.Output[0] = Info(declaredName, type, dims);
        }
        switch (r.Next(16))
        {
            case 0: c.Mutation = "identical"; c.Truth = PairTruth.Equivalent; break;
            case 1: c.Mutation = "input-renamed"; Rename(g, g.Input[0].Name, "renamed_input"); break;
            case 2: c.Mutation = "extra-input"; g.Input.Add(Info("extra", F32, [1])); c.Truth = PairTruth.Unknown; break;
            case 3: c.Mutation = "output-renamed"; Rename(g, output, "renamed_output"); break;
            case 4: c.Mutation = "output-removed"; if (g.Output.Count > 1) g.Output.RemoveAt(0); else { g.Output.Clear(); g.Output.Add(Info(g.Input[0].Name, F32, null)); } break;
            case 5: c.Mutation = "extra-output"; g.Output.Add(Info(g.Input[0].Name, g.Input[0].Type.TensorType.ElemType, null)); c.Truth = PairTruth.Unknown; break;
            case 6: c.Mutation = "output-cast-double"; Tail(new NodeProto { OpType = "Cast", Name = "cast", Input = { "" }, Attribute = { Attr("to", (long)ElementType.Double) } }, output, ElementType.Double, null); break;
            case 7: c.Mutation = "output-flattened"; Tail(new NodeProto { OpType = "Flatten", Name = "flat", Input = { "" }, Attribute = { Attr("axis", 0L) } }, output, F32, null); break;
            case 8: c.Mutation = "output-cast-string"; Tail(new NodeProto { OpType = "Cast", Name = "cast", Input = { "" }, Attribute = { Attr("to", 8L) } }, output, 8, null); break;
            case 9:
            {
                c.Mutation = "input-type-double";
                var inp = g.Input[0];
                int oldType = inp.Type.TensorType.ElemType;
                string name = inp.Name;
                inp.Type.TensorType.ElemType = ElementType.Double;
                Rename(g, name, name + "_d", inputs: false);
                g.Node.Insert(0, new NodeProto { OpType = "Cast", Name = "cast_in", Input = { name }, Output = { name + "_d" }, Attribute = { Attr("to", (long)oldType) } });
                break;
            }
            case 10:
            {
                c.Mutation = "input-shape-changed";
                var shape = g.Input[0].Type.TensorType.Shape;
                if (shape != null && shape.Dim.Count > 0) shape.Dim[^1].DimValue = shape.Dim[^1].DimValue + 1;
                c.Truth = PairTruth.Unknown; // the declared shape alone may not change what runs
                break;
            }
            case 11:
            {
                c.Mutation = "weights-doubled";
                var w = g.Initializer.Where(t => t.DataType == F32 && t.RawData.Length >= 16).ToList();
                if (w.Count == 0) { c.Truth = PairTruth.Unknown; break; }
                var t = Pick(r, w);
                var v = TensorData.ReadDoubles(t, t.RawData.Span);
                g.Initializer[g.Initializer.IndexOf(t)] = TensorData.Create(t.Name, F32, [.. t.Dims], v.Select(x => x * 2 + 0.5).ToArray());
                c.Truth = PairTruth.Unknown; // a weight may not reach the output (e.g. an If branch not taken)
                break;
            }
            case 12:
            {
                // Both sides get a zero-size intermediate (Resize roi = Constant of shape [0], as paddle2onnx writes).
                c.Mutation = "empty-tensor-both";
                foreach (var m in new[] { c.Model, other })
                {
                    m.Graph.Node.Insert(0, new NodeProto { OpType = "Constant", Name = "roi", Output = { "roi" }, Attribute = { Attr("value", Make("roi", F32, [0], [])) } });
                    m.Graph.Node.Insert(1, new NodeProto { OpType = "Shape", Name = "roi_shape", Input = { "roi" }, Output = { "roi_n" } });
                    m.Graph.Output.Add(Info("roi_n", 7, [1]));
                    m.Graph.Output.Add(Info("roi", F32, [0]));
                }
                c.Truth = PairTruth.Equivalent;
                break;
            }
            case 13:
            {
                c.Mutation = "string-output-both";
                foreach (var m in new[] { c.Model, other })
                {
                    m.Graph.Node.Add(new NodeProto { OpType = "Cast", Name = "to_str", Input = { m.Graph.Input[0].Name }, Output = { "as_string" }, Attribute = { Attr("to", 8L) } });
                    m.Graph.Output.Add(Info("as_string", 8, null));
                }
                c.Truth = PairTruth.Equivalent;
                break;
            }
            case 14:
            {
                // The same ArgMax, plus 1 on one side: every element differs whatever the inputs (ArgMax over two
                // different axes does not: both are all zeros when both axes have size 1, campaign check-pairs:7000071).
                c.Mutation = "int-output-differs";
                foreach (var (m, plusOne) in new[] { (c.Model, false), (other, true) })
                {
                    m.Graph.Node.Add(new NodeProto { OpType = "ArgMax", Name = "argmax", Input = { m.Graph.Input[0].Name }, Output = { plusOne ? "am0" : "am" }, Attribute = { Attr("axis", 0L), Attr("keepdims", 1L) } });
                    if (plusOne)
                    {
                        m.Graph.Initializer.Add(Make("am_one", 7, [], [1]));
                        m.Graph.Node.Add(new NodeProto { OpType = "Add", Name = "argmax_plus_one", Input = { "am0", "am_one" }, Output = { "am" } });
                    }
                    m.Graph.Output.Add(Info("am", 7, null));
                }
                break;
            }
            default:
            {
                c.Mutation = "scalar-and-bool-outputs-both";
                foreach (var m in new[] { c.Model, other })
                {
                    m.Graph.Node.Add(new NodeProto { OpType = "ReduceMax", Name = "rmax", Input = { m.Graph.Input[0].Name }, Output = { "mx" }, Attribute = { Attr("keepdims", 0L) } });
                    m.Graph.Initializer.Add(Make("zero", F32, [], [0]));
                    m.Graph.Node.Add(new NodeProto { OpType = "Greater", Name = "gt", Input = { "mx", "zero" }, Output = { "pos" } });
                    m.Graph.Output.Add(Info("mx", F32, []));
                    m.Graph.Output.Add(Info("pos", 9, []));
                }
                c.Truth = PairTruth.Equivalent;
                break;
            }
        }
        c.Other = other;
    }

    static void Rename(GraphProto g, string from, string to, bool inputs = true)
    {
        if (inputs) foreach (var i in g.Input) if (i.Name == from) i.Name = to;
        foreach (var o in g.Output) if (o.Name == from) o.Name = to;
        foreach (var n in g.Node)
        {
            for (int i = 0; i < n.Input.Count; i++) if (n.Input[i] == from) n.Input[i] = to;
            for (int i = 0; i < n.Output.Count; i++) if (n.Output[i] == from) n.Output[i] = to;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Very deep and very wide graphs (child process; each must finish in seconds)
    static void Scale(FuzzCase c, Random r)
    {
        var g = new GraphBuilder(15, r.Next());
        c.Base = "synthetic";
        c.Timeout = TimeSpan.FromSeconds(90);
        c.Runs = [RunKind.Fold, RunKind.Inspect, RunKind.FoldCheck];
        g.Input("x", F32, [1, 2, 2, 2]);
        switch (c.Seed % 5)
        {
            case 0:
            {
                c.Mutation = "deep-relu-10000";
                string cur = "x";
                for (int i = 0; i < 10000; i++) { g.Node("Relu", [cur], $"r{i}", $"relu{i}"); cur = $"r{i}"; }
                g.Output(cur, F32, [1, 2, 2, 2]);
                break;
            }
            case 1:
            {
                c.Mutation = "deep-bn-chain-5000";
                string cur = "x";
                for (int i = 0; i < 5000; i++) { g.Bn(cur, 2, $"b{i}", name: $"bn{i}"); cur = $"b{i}"; }
                g.Output(cur, F32, [1, 2, 2, 2]);
                break;
            }
            case 2:
            {
                c.Mutation = "deep-conv-bn-5000";
                string cur = "x";
                g.Init("w", F32, [2, 2, 1, 1], -0.7, 0.7);
                for (int i = 0; i < 5000; i++)
                {
                    g.Node("Conv", [cur, "w"], $"c{i}", $"conv{i}");
                    g.Bn($"c{i}", 2, $"b{i}", name: $"bn{i}");
                    cur = $"b{i}";
                }
                g.Output(cur, F32, [1, 2, 2, 2]);
                break;
            }
            case 3:
            {
                c.Mutation = "wide-bn-4000";
                var outs = new List<string>();
                for (int i = 0; i < 4000; i++) { g.Bn("x", 2, $"b{i}", name: $"bn{i}"); outs.Add($"b{i}"); }
                g.Node("Sum", [.. outs], "y", "sum");
                g.Output("y", F32, [1, 2, 2, 2]);
                break;
            }
            default:
            {
                c.Mutation = "wide-conv-bn-3000";
                g.Init("w", F32, [2, 2, 1, 1]);
                var outs = new List<string>();
                for (int i = 0; i < 3000; i++) { g.Node("Conv", ["x", "w"], $"c{i}", $"conv{i}"); g.Bn($"c{i}", 2, $"b{i}", name: $"bn{i}"); outs.Add($"b{i}"); }
                g.Node("Sum", [.. outs], "y", "sum");
                g.Output("y", F32, [1, 2, 2, 2]);
                break;
            }
        }
        c.Model = g.Proto;
    }
}
