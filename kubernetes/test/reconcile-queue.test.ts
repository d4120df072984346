import { expect } from 'chai';
import { ReconcileQueue } from '../src';

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('ReconcileQueue (a controller\'s work queue)', () => {
  it('Should handle a key added many times while it waits once', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    const q = new ReconcileQueue(async (k) => {
      seen.push(k);
      if (k === 'busy') await blocked;
    }, { concurrency: 1 });
    q.add('busy');
    q.add('a');
    q.add('b');
    q.add('a');
    q.add('a');
    release();
    await q.idle();
    expect(seen).to.deep.equal(['busy', 'a', 'b']);
  });

  it('Should never run one key twice at once, and run it again after when it was added meanwhile', async () => {
    let running = 0;
    let maxRunning = 0;
    const seen: string[] = [];
    let release!: () => void;
    const q = new ReconcileQueue(async (k) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      seen.push(k);
      if (seen.length === 1) await new Promise<void>((r) => (release = r));
      running--;
    }, { concurrency: 4 });
    q.add('a');
    await tick();
    q.add('a');
    q.add('a');
    await tick();
    expect(seen).to.deep.equal(['a']);
    release();
    await q.idle();
    expect(seen, 'once more, for the change it did not see').to.deep.equal(['a', 'a']);
    expect(maxRunning).to.equal(1);
  });

  it('Should retry a failed key after a backoff until it succeeds', async () => {
    let calls = 0;
    const q = new ReconcileQueue(async () => {
      if (++calls < 3) throw new Error('conflict');
    }, { backoff: { initialMs: 5, maxMs: 10 } });
    q.add('a');
    await q.idle();
    expect(calls).to.equal(3);
  });

  it('Should drop waiting keys and retries on clear(), and take none after stop()', async () => {
    const seen: string[] = [];
    const q = new ReconcileQueue(async (k) => {
      seen.push(k);
      if (k === 'bad') throw new Error('x');
    }, { concurrency: 1, backoff: { initialMs: 50, maxMs: 50 } });
    q.add('bad');
    // Its failure schedules the retry (25-50 ms away) within this turn's microtasks: clear in this turn's
    // check phase, which comes before any timer can fire, rather than 5 ms on, which a loaded machine
    // can stretch past the retry.
    await new Promise((r) => setImmediate(r));
    expect(q.size, 'the retry is pending').to.equal(1);
    q.clear();
    await q.idle();
    await tick(80);
    expect(seen, 'the retry was dropped').to.deep.equal(['bad']);
    await q.stop();
    q.add('later');
    await tick(5);
    expect(seen).to.deep.equal(['bad']);
  });
});
