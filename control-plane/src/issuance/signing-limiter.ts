/**
 * Bounds the signing work in flight so a thundering herd of sidecars cannot
 * exhaust the control plane: at most `concurrency` signings run, at most
 * `maxQueue` wait, and the rest are refused at once with TRELLIS_CP_OVERLOADED
 * (RESOURCE_EXHAUSTED) and a retry hint, instead of queueing without bound.
 */
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';

/** Limits of the signing queue. */
export interface SigningLimits {
  concurrency: number;
  maxQueue: number;
}

/** A FIFO concurrency limiter with a bounded queue. */
export class SigningLimiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  /** Moving average of one job's duration, for the retry hint. */
  private avgMs = 2;

  constructor(private readonly limits: SigningLimits, private readonly nowMs: () => number = Date.now, private readonly random: () => number = Math.random) {}

  /** Jobs running plus waiting. */
  get depth(): number {
    return this.active + this.queue.length;
  }

  /** Runs `job` when a slot is free; throws TRELLIS_CP_OVERLOADED when the queue is full. */
  async run<T>(job: () => T | Promise<T>): Promise<T> {
    if (this.active >= this.limits.concurrency) {
      if (this.queue.length >= this.limits.maxQueue) {
        throw new ControlPlaneError(ControlPlaneErrorCode.OVERLOADED, `signing queue full (${this.queue.length} waiting); retry later`, {
          retryAfterMs: this.retryHintMs(),
        });
      }
      await new Promise<void>((resolve) => this.queue.push(resolve));
    } else {
      this.active++;
    }
    // Signing is synchronous CPU work: yield to the event loop first so
    // arriving requests are read (and queued or refused) instead of waiting
    // unseen in socket buffers behind a long run of signings.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const start = this.nowMs();
    try {
      return await job();
    } finally {
      this.avgMs = this.avgMs * 0.9 + Math.max(0.1, this.nowMs() - start) * 0.1;
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }

  /** How long a refused caller should wait: the time to drain the queue, jittered, at least 100 ms. */
  retryHintMs(): number {
    const drain = (this.queue.length / Math.max(1, this.limits.concurrency)) * this.avgMs;
    return Math.round(Math.max(100, drain) * (1 + this.random()));
  }
}
