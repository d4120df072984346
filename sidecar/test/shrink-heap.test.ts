import { expect } from 'chai';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { silentLogger } from '@trellis/shared';
import { HeapShrinker } from './helpers/harness';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Shrinking the heap after a connection burst', () => {
  it('Should merge the requests made while a run is pending into one run of every step', async () => {
    let collections = 0;
    const s = new HeapShrinker({ logger: silentLogger, collect: () => collections++, delayMs: 20, minIntervalMs: 0, stepsMs: [0, 10, 20] });
    s.request();
    s.request();
    await sleep(25);
    s.request();
    await sleep(100);
    expect(collections).to.equal(3);
  });

  it('Should start two runs at least minIntervalMs apart, however often it is asked', async () => {
    const starts: number[] = [];
    let n = 0;
    const s = new HeapShrinker({ logger: silentLogger, collect: () => n++ % 2 === 0 && starts.push(Date.now()), delayMs: 10, minIntervalMs: 300, stepsMs: [0, 5] });
    s.request();
    await sleep(50);
    s.request();
    await sleep(50);
    expect(starts).to.have.length(1);
    await sleep(400);
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
      await sleep(200);
      expect(majors.length).to.be.at.least(2);
      expect(runInNewContext('typeof gc')).to.equal('undefined');
    } finally {
      obs.disconnect();
    }
  });
});
