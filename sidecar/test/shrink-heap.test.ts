import { expect } from 'chai';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { createLogger, silentLogger } from '@trellis/shared';
import { waitFor } from '@trellis/testkit';
import { HeapShrinker } from './helpers/harness';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A logger that counts finished runs (the shrinker logs one line at the end of each), so a test waits
 * for a run to be over instead of sleeping for as long as one should take: on a loaded machine the
 * timers fire late, and a request meant for "after the run" lands inside it.
 */
function runCounter(): { logger: ReturnType<typeof createLogger>; runs(): number } {
  let runs = 0;
  const logger = createLogger({ component: 'test', sink: { write: (line: string) => (line.includes('heap shrunk') ? runs++ : 0) } });
  return { logger, runs: () => runs };
}

describe('Shrinking the heap after a connection burst', () => {
  it('Should merge the requests made while a run is pending into one run of every step', async () => {
    const { logger, runs } = runCounter();
    let collections = 0;
    const s: HeapShrinker = new HeapShrinker({
      logger,
      // A request in the middle of the run (after its first collection, before its next step), whenever the timers fire.
      collect: () => collections++ === 0 && queueMicrotask(() => s.request()),
      delayMs: 20,
      minIntervalMs: 0,
      stepsMs: [0, 10, 20],
    });
    s.request();
    s.request();
    await waitFor('the run to finish', () => runs() >= 1, 10_000, 5);
    // A request that had not been merged would start a run of its own delayMs (20 ms) after this one ended.
    await sleep(100);
    expect(collections).to.equal(3);
  });

  it('Should start two runs at least minIntervalMs apart, however often it is asked', async () => {
    const { logger, runs } = runCounter();
    const starts: number[] = [];
    let n = 0;
    const s = new HeapShrinker({ logger, collect: () => n++ % 2 === 0 && starts.push(Date.now()), delayMs: 10, minIntervalMs: 300, stepsMs: [0, 5] });
    s.request();
    await waitFor('the first run to finish', () => runs() >= 1, 10_000, 5);
    // Asked again at once, twice: the second run waits for the interval, and the extra request joins it.
    s.request();
    s.request();
    expect(starts).to.have.length(1);
    await waitFor('the second run to finish', () => runs() >= 2, 10_000, 5);
    expect(starts).to.have.length(2);
    expect(starts[1]! - starts[0]!).to.be.at.least(290);
    s.stop();
  });

  it('Should run real full V8 collections and leave no gc() for code that runs later', async () => {
    const majors: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(e.startTime);
    });
    obs.observe({ entryTypes: ['gc'] });
    try {
      new HeapShrinker({ logger: silentLogger, delayMs: 0, stepsMs: [0, 10] }).request();
      // GC entries reach the observer asynchronously, after the collections themselves.
      await waitFor('two major collections observed', () => majors.length >= 2, 10_000, 10);
      expect(majors.length).to.be.at.least(2);
      expect(runInNewContext('typeof gc')).to.equal('undefined');
    } finally {
      obs.disconnect();
    }
  });
});
