/**
 * Memory for bytes in flight between the two sides of a splice.
 *
 * Every chunk read off a socket must be copied out of the shared read buffer
 * before the next read reuses it. `Buffer.allocUnsafe` would give each copy
 * its own ArrayBuffer backing store (above 4 KiB), and that external memory is
 * what V8 answers with full mark-compact collections: at bulk rates they took
 * a quarter of the sidecar's CPU. Here chunks are cut from reused slabs
 * instead.
 *
 * Each read direction of a connection cuts from its own slab (a `ChunkLane`),
 * and a slab goes back to the process-wide `SlabStore` as soon as every chunk
 * cut from it has been written (the sink's write callback releases it). So an
 * idle connection holds no slab, and a connection whose peer stops reading
 * pins only slabs holding its own queued bytes (bounded by backpressure), never
 * slabs shared with other connections. A slab whose chunks are never released
 * (a write that never completes) is left to the GC: the store only keeps slabs
 * with nothing out.
 */

/** Size of one slab; a chunk is one read, at most 64 KiB. */
const SLAB_BYTES = 128 * 1024;

/** Released slabs kept for reuse, process-wide (up to `maxSpare`; the rest go to the GC). */
export class SlabStore {
  private readonly spare: Slab[] = [];

  constructor(
    readonly slabBytes = SLAB_BYTES,
    private readonly maxSpare = 32,
  ) {}

  /** A slab with nothing cut from it. */
  take(): Slab {
    return this.spare.pop() ?? new Slab(this.slabBytes, this);
  }

  /**
   * Takes back a slab whose chunks have all been released. Only slabs of the
   * store's size are kept: an oversized one (made for a read larger than a
   * slab) is left to the garbage collector rather than held as a spare.
   */
  give(slab: Slab): void {
    if (slab.buf.length === this.slabBytes && this.spare.length < this.maxSpare) this.spare.push(slab);
  }

  /** Slabs kept for reuse (for tests). */
  get spareCount(): number {
    return this.spare.length;
  }
}

/** A region of memory chunks are cut from, counted by chunks not yet written. */
export class Slab {
  readonly buf: Buffer;
  private used = 0;
  private out = 0;
  /** The lane cutting from this slab, while it is one's current slab. */
  lane: ChunkLane | undefined;
  /** Pass as the callback of the write that carries a chunk cut from this slab. */
  readonly done: () => void;

  constructor(
    bytes: number,
    private readonly store: SlabStore,
  ) {
    this.buf = Buffer.allocUnsafeSlow(bytes);
    this.done = () => {
      if (--this.out > 0) return;
      // Nothing of this slab is in flight any more: back to the store, whole.
      if (this.lane) this.lane.forget(this);
      this.used = 0;
      this.store.give(this);
    };
  }

  /** Bytes still free at the end of the slab. */
  get free(): number {
    return this.buf.length - this.used;
  }

  /** Copies `src[0, n)` into the slab and returns the copy; release it with `done`. */
  copyIn(src: Uint8Array, n: number): Buffer {
    const start = this.used;
    this.buf.set(n === src.length ? src : src.subarray(0, n), start);
    this.used += n;
    this.out++;
    return this.buf.subarray(start, start + n);
  }
}

/** The slab one read direction of one connection cuts its chunks from. */
export class ChunkLane {
  private current: Slab | undefined;

  constructor(private readonly store: SlabStore) {}

  /** A slab with room for `n` bytes (`n` at most the store's slab size). */
  slabFor(n: number): Slab {
    const c = this.current;
    if (c && c.free >= n) return c;
    // A full slab stays with its chunks until they are written, then goes back to the store.
    if (c) c.lane = undefined;
    const next = n <= this.store.slabBytes ? this.store.take() : new Slab(n, this.store);
    next.lane = this;
    this.current = next;
    return next;
  }

  /** Called by a slab once all its chunks are released. */
  forget(slab: Slab): void {
    if (this.current === slab) this.current = undefined;
    slab.lane = undefined;
  }
}
