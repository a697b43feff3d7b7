using System.Buffers;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace NormFold.Onnx;

/// <summary>
/// A whole file's bytes, read-only: the file mapped into memory, so its weights are the page cache's own pages (no
/// copy, no fresh memory — on a virtual machine, first-touch faults on new memory cost ten times more than reading
/// the file); read into an array where mapping is not possible (empty files, special files).
/// Bulk copies (<see cref="CopyTo"/>) read from the file into a warm buffer instead of touching the mapped pages:
/// the kernel copies from its cache through its own large-page mapping, which costs a third of faulting the pages in.
/// The mapping lives until <see cref="Dispose"/>: never earlier, so a span taken from it cannot outlive it.
/// A file truncated by another process while mapped makes reads of its lost tail fault, as with any mapped file.
/// </summary>
internal sealed class FileBytes : IDisposable
{
    readonly MappedMemory? _mapped;
    public ReadOnlyMemory<byte> Memory { get; }

    FileBytes(MappedMemory? mapped, ReadOnlyMemory<byte> memory) { _mapped = mapped; Memory = memory; }

    public static FileBytes Open(string path)
    {
        long length = new FileInfo(path).Length;
        if (length > Array.MaxLength) throw new IOException($"{path}: {length} bytes is too large to read at once");
        if (length > 0)
        {
            try
            {
                var mapped = new MappedMemory(path, (int)length);
                return new FileBytes(mapped, mapped.Memory);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return new FileBytes(null, File.ReadAllBytes(path));
    }

    public void Dispose() => ((IDisposable?)_mapped)?.Dispose();

    /// <summary>Copies <paramref name="memory"/>[start, start + destination.Length) into <paramref name="destination"/>:
    /// read from the file where the memory is a mapped file's, else copied.</summary>
    public static void CopyTo(ReadOnlyMemory<byte> memory, int start, Span<byte> destination)
    {
        if (!MemoryMarshal.TryGetMemoryManager(memory, out MappedMemory? mapped, out int index, out _) || mapped.Released)
        {
            memory.Span.Slice(start, destination.Length).CopyTo(destination);
            return;
        }
        long offset = index + start;
        for (int done = 0; done < destination.Length;)
        {
            int n = RandomAccess.Read(mapped.Handle, destination[done..], offset + done);
            if (n <= 0) throw new IOException("a mapped model file shrank while it was being read");
            done += n;
        }
    }

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
            Parallel.For(0, (length + Chunk - 1) / Chunk, () => ArrayPool<byte>.Shared.Rent(Chunk), (k, _, buffer) =>
            {
                int offset = k * Chunk, n = Math.Min(Chunk, length - offset);
                fill(buffer.AsSpan(0, n), offset);
                RandomAccess.Write(handle, buffer.AsSpan(0, n), start + offset);
                return buffer;
            }, buffer => ArrayPool<byte>.Shared.Return(buffer));
            file.Seek(start + length, SeekOrigin.Begin);
            return;
        }
        var one = ArrayPool<byte>.Shared.Rent(Math.Min(length, Chunk));
        try
        {
            for (int offset = 0; offset < length; offset += Chunk)
            {
                int n = Math.Min(Chunk, length - offset);
                fill(one.AsSpan(0, n), offset);
                output.Write(one, 0, n);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(one); }
    }

    /// <summary>Bytes per streamed chunk: large enough for few system calls, small enough to stay in cache.</summary>
    public const int Chunk = 1 << 20;

    sealed unsafe class MappedMemory : MemoryManager<byte>
    {
        public SafeFileHandle Handle { get; }
        public bool Released => _released;
        readonly MemoryMappedFile _file;
        readonly MemoryMappedViewAccessor _view;
        readonly byte* _pointer;
        readonly int _length;
        bool _released;

        public MappedMemory(string path, int length)
        {
            Handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            try
            {
                _file = MemoryMappedFile.CreateFromFile(Handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            }
            catch
            {
                Handle.Dispose();
                throw;
            }
            try
            {
                _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p); // holds the view until Dispose, even unreachable
                _pointer = p + _view.PointerOffset;
                _length = length;
            }
            catch
            {
                _view?.Dispose();
                _file.Dispose();
                Handle.Dispose();
                throw;
            }
        }

        public override Span<byte> GetSpan() => _released ? throw new ObjectDisposedException("model file mapping") : new(_pointer, _length);
        public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);
        public override void Unpin() { }

        protected override void Dispose(bool disposing)
        {
            if (!disposing || _released) return;
            _released = true;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
            Handle.Dispose();
        }
    }
}
