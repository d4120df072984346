/**
 * Memory for bytes in flight between the two sides of a splice.
 *
 * Every chunk read off a socket must be copied out of the shared read buffer
 * before the next read reuses it. `Buffer.allocUnsafe` would give each copy
 * its own ArrayBuffer backing store (above 4 KiB), and that external memory is
 * what V8 answers with full mark-compact collections: at bulk rates they took
 * a quarter of the sidecar's CPU. Here chunks are cut from a few large slabs
 * instead, and a slab is reused once every chunk cut from it has been written
 * (the sink's write callback releases it). A slab whose chunks are never
 * released (a write that never completes) is simply left to the GC: nothing
 * in the pool refers to a slab with chunks out.
 */

/** Size of one slab; every chunk is at most one read (64 KiB), so a slab holds several. */
const SLAB_BYTES = 256 * 1024;

/** A region of memory chunks are cut from, reference-counted by chunks not yet written. */
export class Slab {
  readonly buf: Buffer;
  private used = 0;
  private out = 0;
  private retired = false;
  /** Pass as the callback of the write that carries a chunk cut from this slab. */
  readonly done: () => void;

  constructor(
    bytes: number,
    private readonly onFree: (slab: Slab) => void,
  ) {
    this.buf = Buffer.allocUnsafeSlow(bytes);
    this.done = () => {
      if (--this.out === 0 && this.retired) {
        this.retired = false;
        this.used = 0;
        this.onFree(this);
      }
    };
  }

  /** Bytes still free at the end of the slab. */
  get free(): number {
    return this.buf.length - this.used;
  }

  /** Chunks cut from this slab and not yet released. */
  get outstanding(): number {
    return this.out;
  }

  /** Copies `src[0, n)` into the slab and returns the copy; release it with `done`. */
  copyIn(src: Uint8Array, n: number): Buffer {
    const start = this.used;
    this.buf.set(n === src.length ? src : src.subarray(0, n), start);
    this.used += n;
    this.out++;
    return this.buf.subarray(start, start + n);
  }

  /** The pool stops cutting from this slab; it comes back once its chunks are released. Returns true if it is free now. */
  retire(): boolean {
    if (this.out === 0) {
      this.used = 0;
      return true;
    }
    this.retired = true;
    return false;
  }
}

/** Hands out slabs with room for a chunk, reusing released ones (up to `maxSpare` kept). */
export class ChunkPool {
  private current: Slab;
  private readonly spare: Slab[] = [];
  private readonly free = (slab: Slab): void => {
    if (this.spare.length < this.maxSpare) this.spare.push(slab);
  };

  constructor(
    private readonly slabBytes = SLAB_BYTES,
    private readonly maxSpare = 16,
  ) {
    this.current = new Slab(slabBytes, this.free);
  }

  /** A slab with room for `n` bytes (`n` at most the slab size). */
  slabFor(n: number): Slab {
    if (this.current.free >= n) return this.current;
    if (this.current.retire() && this.current.free >= n) return this.current;
    this.current = this.spare.pop() ?? new Slab(Math.max(this.slabBytes, n), this.free);
    return this.current;
  }

  /** Slabs kept for reuse (for tests). */
  get spareCount(): number {
    return this.spare.length;
  }
}
