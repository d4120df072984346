/**
 * A clock whose time only moves when the test says so, with timers that fire
 * as it moves: pass `clock.now` where code takes a clock and the clock itself
 * where it takes timers, and a test of expiry or renewal advances time
 * instead of sleeping through it.
 */
export class FakeClock {
  private ms: number;
  private timers: Array<{ readonly id: number; readonly at: number; readonly fn: () => void }> = [];
  private nextId = 1;
  constructor(start: Date | number = Date.UTC(2026, 0, 1, 0, 0, 0)) {
    this.ms = typeof start === 'number' ? start : start.getTime();
  }
  /** The current fake time. */
  now = (): Date => new Date(this.ms);
  /** Moves time forward by `ms` milliseconds, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    this.runUntil(this.ms + ms);
  }
  /** Moves time to `date` (never backwards for timers: those due by then fire in order). */
  set(date: Date): void {
    const t = date.getTime();
    if (t >= this.ms) this.runUntil(t);
    else this.ms = t;
  }
  /** A timer that fires when the fake time reaches now + `ms` (Node's setTimeout shape, for a `timers` collaborator). */
  setTimeout = (fn: () => void, ms: number): { readonly id: number; unref(): void } => {
    const id = this.nextId++;
    this.timers.push({ id, at: this.ms + Math.max(0, ms), fn });
    return { id, unref: () => undefined };
  };
  /** Cancels a timer from {@link setTimeout}; anything else is ignored. */
  clearTimeout = (handle: unknown): void => {
    const id = (handle as { id?: unknown } | undefined)?.id;
    this.timers = this.timers.filter((t) => t.id !== id);
  };
  /** How many timers are waiting. */
  get pendingTimers(): number {
    return this.timers.length;
  }
  private runUntil(target: number): void {
    for (;;) {
      let next: (typeof this.timers)[number] | undefined;
      for (const t of this.timers) if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.id < next.id))) next = t;
      if (!next) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.ms = Math.max(this.ms, next.at);
      next.fn();
    }
    this.ms = target;
  }
}
