using System.Buffers;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace NormFold.Onnx;

/// <summary>
/// A file's bytes, read-only, as views of the file mapped into memory, so weights are the page cache's own pages (no
/// copy, no fresh memory — on a virtual machine, first-touch faults on new memory cost ten times more than reading
/// the file); ranges are read into arrays where mapping is not possible (special files). Each <see cref="Range"/> maps
/// only its own bytes, so a data file may be far larger than 2 GB.
/// Bulk copies (<see cref="CopyTo"/>) read from the file into a warm buffer instead of touching the mapped pages:
/// the kernel copies from its cache through its own large-page mapping, which costs a third of faulting the pages in.
/// Views live until <see cref="Dispose"/>: never earlier, so a span taken from one cannot outlive it.
/// A file truncated by another process while mapped makes reads of its lost tail fault, as with any mapped file.
/// </summary>
internal sealed class FileBytes : IDisposable
{
    readonly SafeFileHandle _handle;
    readonly MemoryMappedFile? _map;
    readonly List<MappedMemory> _views = [];
    public long Length { get; }

    FileBytes(SafeFileHandle handle, MemoryMappedFile? map, long length) { _handle = handle; _map = map; Length = length; }

    public static FileBytes Open(string path)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = RandomAccess.GetLength(handle);
        MemoryMappedFile? map = null;
        if (length > 0)
        {
            try { map = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return new FileBytes(handle, map, length);
    }

    /// <summary>Bytes [offset, offset + length) of the file (the caller has checked they lie within it).</summary>
    public ReadOnlyMemory<byte> Range(long offset, int length)
    {
        if (length == 0) return ReadOnlyMemory<byte>.Empty;
        if (_map is null)
        {
            var bytes = GC.AllocateUninitializedArray<byte>(length);
            Read(_handle, offset, bytes);
            return bytes;
        }
        var view = new MappedMemory(this, offset, length);
        lock (_views) _views.Add(view);
        return view.Memory;
    }

    public void Dispose()
    {
        lock (_views)
        {
            foreach (var v in _views) ((IDisposable)v).Dispose();
            _views.Clear();
        }
        _map?.Dispose();
        _handle.Dispose();
    }

    static void Read(SafeFileHandle handle, long offset, Span<byte> destination)
    {
        for (int done = 0; done < destination.Length;)
        {
            int n = RandomAccess.Read(handle, destination[done..], offset + done);
            if (n <= 0) throw new IOException("a model file shrank while it was being read");
            done += n;
        }
    }

    /// <summary>Copies <paramref name="memory"/>[start, start + destination.Length) into <paramref name="destination"/>:
    /// read from the file where the memory is a mapped file's, else copied.</summary>
    public static void CopyTo(ReadOnlyMemory<byte> memory, int start, Span<byte> destination)
    {
        if (MemoryMarshal.TryGetMemoryManager(memory, out MappedMemory? mapped, out int index, out _) && !mapped.Released)
            Read(mapped.File._handle, mapped.FileOffset + index + start, destination);
        else
            memory.Span.Slice(start, destination.Length).CopyTo(destination);
    }

    /// <summary>combine(map(chunk)…) over <paramref name="memory"/> a chunk of at most <see cref="Chunk"/> bytes at a
    /// time, chunks on every core at once (so <paramref name="combine"/> must not care about order): a mapped file's
    /// read into warm pooled buffers (see <see cref="CopyTo"/>), so a pass over a weight does not make the file's
    /// pages resident in this process. Chunk offsets are multiples of <see cref="Chunk"/>.</summary>
    public static T Reduce<T>(ReadOnlyMemory<byte> memory, ChunkMap<T> map, Func<T, T, T> combine, T seed) =>
        Reduce([memory], map, combine, seed)[0];

    /// <summary>The same for each of <paramref name="memories"/>, the chunks of all of them in one parallel loop.</summary>
    public static T[] Reduce<T>(IReadOnlyList<ReadOnlyMemory<byte>> memories, ChunkMap<T> map, Func<T, T, T> combine, T seed)
    {
        var results = new T[memories.Count];
        var jobs = new List<(int Memory, int Offset)>();
        for (int i = 0; i < memories.Count; i++)
        {
            var memory = memories[i];
            if (!MemoryMarshal.TryGetMemoryManager(memory, out MappedMemory? _, out _, out _)) results[i] = combine(seed, map(memory.Span));
            else
            {
                results[i] = seed;
                for (int offset = 0; offset < memory.Length; offset += Chunk) jobs.Add((i, offset));
            }
        }
        ParallelFor(jobs.Count, ChunkBuffer.Rent, (k, buffer) =>
        {
            var (i, offset) = jobs[k];
            var chunk = buffer.Span(Math.Min(Chunk, memories[i].Length - offset));
            CopyTo(memories[i], offset, chunk);
            T value = map(chunk);
            lock (results) results[i] = combine(results[i], value);
        }, buffer => buffer.Dispose());
        return results;
    }

    public delegate T ChunkMap<T>(ReadOnlySpan<byte> chunk);

    /// <summary>Writes <paramref name="memory"/> to <paramref name="output"/>, a chunk at a time through a pooled buffer
    /// when it is a mapped file's (see <see cref="CopyTo"/>).</summary>
    public static void WriteTo(ReadOnlyMemory<byte> memory, Stream output)
    {
        if (!MemoryMarshal.TryGetMemoryManager(memory, out MappedMemory? _, out _, out _)) output.Write(memory.Span);
        else WriteChunked(output, memory.Length, (chunk, offset) => CopyTo(memory, offset, chunk));
    }

    /// <summary>Writes <paramref name="length"/> bytes that <paramref name="fill"/>(chunk, offset) produces a chunk at a
    /// time into warm pooled buffers. To a file, chunks are filled and written at their offsets on every core at once;
    /// to any other stream, in order. Chunk offsets are multiples of <see cref="Chunk"/>.</summary>
    public static void WriteChunked(Stream output, int length, Action<Span<byte>, int> fill)
    {
        if (output is FileStream { CanSeek: true } file && length > Chunk)
        {
            file.Flush();
            long start = file.Position;
            var handle = file.SafeFileHandle;
            ParallelFor((length + Chunk - 1) / Chunk, ChunkBuffer.Rent, (k, buffer) =>
            {
                int offset = k * Chunk;
                var chunk = buffer.Span(Math.Min(Chunk, length - offset));
                fill(chunk, offset);
                RandomAccess.Write(handle, chunk, start + offset);
            }, buffer => buffer.Dispose());
            file.Seek(start + length, SeekOrigin.Begin);
            return;
        }
        using var one = ChunkBuffer.Rent();
        for (int offset = 0; offset < length; offset += Chunk)
        {
            var chunk = one.Span(Math.Min(Chunk, length - offset));
            fill(chunk, offset);
            output.Write(chunk);
        }
    }

    /// <summary>Parallel.For with a per-thread state whose failure surfaces as the first exception thrown (a full
    /// disk is an IOException, as in a sequential write, not an AggregateException repeating it per core).</summary>
    internal static void ParallelFor<TState>(int count, Func<TState> init, Action<int, TState> body, Action<TState> done)
    {
        try { Parallel.For(0, count, init, (k, _, state) => { body(k, state); return state; }, done); }
        catch (AggregateException e) { System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw(); }
    }

    /// <summary>Bytes per streamed chunk: large enough for few system calls, small enough to stay in cache — and each
    /// buffer's first use faults in fresh pages (1.4 µs per 4 KB page here): 1 MB buffers made a 3.7 MB fold take 450
    /// more page faults than 256 KB ones.</summary>
    public const int Chunk = 1 << 18;

    /// <summary>A <see cref="Chunk"/>-byte buffer outside the garbage-collected heap, from a pool of at most two per core,
    /// reused (its pages stay warm). On the heap each would be a large object, and the first few of those trigger a
    /// full compacting collection: 3–6 ms of a 40 ms fold.</summary>
    internal sealed unsafe class ChunkBuffer : IDisposable
    {
        static readonly Stack<ChunkBuffer> Pool = new();
        readonly byte* _pointer = (byte*)NativeMemory.AlignedAlloc(Chunk, 4096);

        public static ChunkBuffer Rent()
        {
            lock (Pool) if (Pool.TryPop(out var buffer)) return buffer;
            return new ChunkBuffer();
        }

        /// <summary>The first <paramref name="length"/> bytes (at most <see cref="Chunk"/>).</summary>
        public Span<byte> Span(int length) => new(_pointer, Math.Min(length, Chunk));

        /// <summary>Back to the pool, or freed when the pool is full. Spans taken from it must not be used after.</summary>
        public void Dispose()
        {
            lock (Pool)
                if (Pool.Count < 2 * Environment.ProcessorCount)
                {
                    Pool.Push(this);
                    return;
                }
            NativeMemory.AlignedFree(_pointer);
        }
    }

    sealed unsafe class MappedMemory : MemoryManager<byte>
    {
        public FileBytes File { get; }
        public long FileOffset { get; }
        public bool Released { get; private set; }
        readonly MemoryMappedViewAccessor _view;
        readonly byte* _pointer;
        readonly int _length;

        public MappedMemory(FileBytes file, long offset, int length)
        {
            File = file;
            FileOffset = offset;
            _view = file._map!.CreateViewAccessor(offset, length, MemoryMappedFileAccess.Read);
            try
            {
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p); // holds the view until Dispose, even unreachable
                _pointer = p + _view.PointerOffset;
                _length = length;
            }
            catch
            {
                _view.Dispose();
                throw;
            }
        }

        public override Span<byte> GetSpan() => Released ? throw Disposed() : new(_pointer, _length);
        public override MemoryHandle Pin(int elementIndex = 0) => Released ? throw Disposed() : new(_pointer + elementIndex);
        public override void Unpin() { }

        static ObjectDisposedException Disposed() => new("model file mapping", "the model was disposed");

        protected override void Dispose(bool disposing)
        {
            if (!disposing || Released) return;
            Released = true;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
    }
}
