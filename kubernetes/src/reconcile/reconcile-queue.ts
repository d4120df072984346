/**
 * The work queue of a controller, as client-go's workqueue: it holds keys,
 * not objects (the handler reads the latest state from an informer's cache
 * when it runs, so a burst of events for one object is one write), each key
 * at most once while it waits, and never in two workers at once; a key added
 * while it is being handled runs once more afterwards. A handler that throws
 * is retried after the shared jittered backoff, per key, reset when the key
 * succeeds. `clear()` drops what waits (a leader that lost its lease stops
 * writing at once); `idle()` resolves when nothing waits or runs.
 */
import { backoffDelayMs, type BackoffOptions, type Logger } from '@trellis/shared';

/** Options of a queue. */
export interface ReconcileQueueOptions {
  /** Keys handled at once (default 4). */
  concurrency?: number;
  /** Retry backoff of a failed key (default 200 ms doubling to 30 s). */
  backoff?: BackoffOptions;
  logger?: Logger;
  /** What the queue reconciles, for logs. */
  name?: string;
  /** Random source for the jitter (tests). */
  random?: () => number;
}

const DEFAULT_RECONCILE_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 200, maxMs: 30_000 });

/** A deduplicating, retrying queue of keys for one handler. */
export class ReconcileQueue {
  private readonly waiting = new Set<string>();
  private readonly running = new Set<string>();
  private readonly again = new Set<string>();
  private readonly attempts = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly idleWaiters: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly handler: (key: string) => Promise<void>,
    private readonly opts: ReconcileQueueOptions = {},
  ) {}

  /** Queues `key` (once; a key being handled runs again after). */
  add(key: string): void {
    if (this.stopped) return;
    const t = this.retryTimers.get(key);
    if (t) {
      clearTimeout(t);
      this.retryTimers.delete(key);
    }
    if (this.running.has(key)) this.again.add(key);
    else this.waiting.add(key);
    this.pump();
  }

  /** Queues every key. */
  addAll(keys: Iterable<string>): void {
    for (const k of keys) this.add(k);
  }

  /** Drops every waiting key and pending retry (keys being handled finish). */
  clear(): void {
    this.waiting.clear();
    this.again.clear();
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.attempts.clear();
    this.settle();
  }

  /** Keys waiting, running or due for a retry. */
  get size(): number {
    return new Set([...this.waiting, ...this.running, ...this.retryTimers.keys()]).size;
  }

  /** Resolves once nothing waits, runs or is due for a retry. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops taking keys and cancels retries; resolves when the running handlers are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clear();
    while (this.running.size > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    const max = this.opts.concurrency ?? 4;
    for (const key of [...this.waiting]) {
      if (this.running.size >= max || this.stopped) return;
      this.waiting.delete(key);
      this.running.add(key);
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    try {
      await this.handler(key);
      this.attempts.delete(key);
    } catch (err) {
      const attempt = this.attempts.get(key) ?? 0;
      this.attempts.set(key, attempt + 1);
      if (!this.stopped && !this.again.has(key)) {
        const delay = backoffDelayMs(attempt, this.opts.backoff ?? DEFAULT_RECONCILE_BACKOFF, (this.opts.random ?? Math.random)());
        this.opts.logger?.warn('reconcile failed; retrying', { queue: this.opts.name, key, attempt: attempt + 1, delayMs: delay, error: err });
        const t = setTimeout(() => {
          this.retryTimers.delete(key);
          this.add(key);
        }, delay);
        t.unref();
        this.retryTimers.set(key, t);
      }
    } finally {
      this.running.delete(key);
      if (this.again.delete(key)) this.waiting.add(key);
      this.pump();
      this.settle();
    }
  }

  private settle(): void {
    if (this.running.size > 0 && !this.stopped) return;
    if (this.stopped && this.running.size === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    if (this.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
