/**
 * Collects "type X changed" signals and flushes them together after a short
 * window (100 ms by default), so a burst of file writes or sidecar
 * connections becomes one push per sidecar. The window is fixed from the first
 * signal, not extended by later ones, so a steady stream of changes cannot
 * postpone pushes forever.
 */
import type { TypeUrl } from '@trellis/shared';

/** Batches dirty types and flushes them after `delayMs`. */
export class PushDebouncer {
  private dirty = new Set<TypeUrl>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly delayMs: number, private readonly flush: (types: ReadonlySet<TypeUrl>) => void) {}

  /** Marks `types` changed; a flush follows within `delayMs`. */
  mark(...types: TypeUrl[]): void {
    for (const t of types) this.dirty.add(t);
    if (this.timer || this.dirty.size === 0) return;
    this.timer = setTimeout(() => this.run(), this.delayMs);
    this.timer.unref();
  }

  /** Cancels any pending flush. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.dirty.clear();
  }

  private run(): void {
    this.timer = null;
    const types = this.dirty;
    this.dirty = new Set();
    this.flush(types);
  }
}
