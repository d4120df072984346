/**
 * Giving back the memory an overload burst left behind, after the burst, as
 * Envoy's `envoy.overload_actions.shrink_heap` does with tcmalloc.
 *
 * A flood of connections grows V8's heap (young generation included) by
 * tens of MB. V8 hands pages back only from its memory reducer, which runs
 * after a full collection; a sidecar that goes idle after the burst makes
 * none, so its heap stayed at the burst's size for good (measured: 52 MB
 * idle, 68 MB long after a 5,000-connection flood). A few full collections
 * bring it back: the first empties the heap and compacts the old
 * generation; V8 shrinks the young generation only at a collection that
 * follows a few seconds of little allocation (its throughput window is
 * 5 s), hence the last one 6 s on. The native relay trims the C heap
 * (malloc_trim) by itself.
 *
 * Node has no API to request a collection; the function `node --expose-gc`
 * would provide is made available once, at run time, and the flag is unset
 * again at once. Each run pauses the process ~10-20 ms, so runs are at least
 * `minIntervalMs` apart whatever an attacker's bursts look like.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '@trellis/shared';

/** Collaborators and timings of a HeapShrinker. */
export interface HeapShrinkerDeps {
  logger: Logger;
  /** One full collection; default: V8's. Tests pass a counter. */
  collect?: () => void;
  /** Wait after a request before the first collection. Default 2000 ms (lets the burst's connections finish closing). */
  delayMs?: number;
  /** Least time between the starts of two runs. Default 30 s. */
  minIntervalMs?: number;
  /** When each collection of a run happens, after its start. Default SHRINK_STEPS_MS. */
  stepsMs?: readonly number[];
}

/** When the collections of one run happen, after its start. */
export const SHRINK_STEPS_MS: readonly number[] = [0, 1000, 6000];

/** Runs the shrink some time after a burst ends; requests during a wait or a run are merged. */
export class HeapShrinker {
  private timer: NodeJS.Timeout | undefined;
  private lastRun = -Infinity;
  private readonly collect: () => void;

  constructor(private readonly deps: HeapShrinkerDeps) {
    this.collect = deps.collect ?? v8FullCollection;
  }

  /** Asks for a shrink once the burst has settled. Never blocks; runs start at least `minIntervalMs` apart. */
  request(): void {
    if (this.timer) return;
    const delay = Math.max(this.deps.delayMs ?? 2000, this.lastRun + (this.deps.minIntervalMs ?? 30_000) - Date.now());
    this.step(0, delay + (this.deps.stepsMs ?? SHRINK_STEPS_MS)[0]!);
  }

  private step(i: number, wait: number): void {
    this.timer = setTimeout(() => {
      if (i === 0) this.lastRun = Date.now();
      this.collect();
      const steps = this.deps.stepsMs ?? SHRINK_STEPS_MS;
      if (i + 1 < steps.length) return this.step(i + 1, steps[i + 1]! - steps[i]!);
      this.timer = undefined;
      this.deps.logger.info('connection burst over: heap shrunk');
    }, wait);
    this.timer.unref();
  }

  /** Cancels a pending run (the sidecar is stopping). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

let gcFunction: (() => void) | null | undefined;

/** A full V8 collection, or nothing when the function cannot be had. */
function v8FullCollection(): void {
  if (gcFunction === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const fn: unknown = runInNewContext('gc');
      gcFunction = typeof fn === 'function' ? (fn as () => void) : null;
    } catch {
      gcFunction = null;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
  gcFunction?.();
}
