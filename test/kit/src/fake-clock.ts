/** A clock whose time only moves when the test says so. */
export class FakeClock {
  private ms: number;
  constructor(start: Date | number = Date.UTC(2026, 0, 1, 0, 0, 0)) {
    this.ms = typeof start === 'number' ? start : start.getTime();
  }
  /** The current fake time. */
  now = (): Date => new Date(this.ms);
  /** Moves time forward by `ms` milliseconds. */
  advance(ms: number): void {
    this.ms += ms;
  }
  set(date: Date): void {
    this.ms = date.getTime();
  }
}
