/** One row of the fault table `npm run chaos` prints. */
export interface FaultRow {
  /** The scenario's name. */
  readonly fault: string;
  /** What was done, in one line. */
  readonly injected: string;
  /** Requests completed during the run, and how many of those failed. */
  readonly requests: { sent: number; failed: number };
  /** From the end of the fault (or its start, for one that does not end) to a steady success stream; null: none. */
  readonly timeToRecoverMs: number | null;
  /** What was lost, in words. */
  readonly lost: string;
  /** Scenario-specific measurements. */
  readonly details: Record<string, unknown>;
}

/** A fault scenario. */
export interface Scenario {
  readonly name: string;
  readonly summary: string;
  run(): Promise<FaultRow>;
}

/** Polls `cond` every `everyMs` until it holds or `ms` passed; resolves with whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, everyMs = 100): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await Promise.resolve().then(cond).catch(() => false)) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
