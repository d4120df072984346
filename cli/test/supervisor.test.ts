/**
 * The supervisor of `trellis up`, with real child processes: a crash loop
 * backs off, a child that stayed ready starts over at the shortest delay,
 * and a sidecar out of credentials is restarted at once with a fresh one.
 */
import { expect } from 'chai';
import { NO_CREDENTIAL_EXIT_CODE, silentLogger } from '@trellis/shared';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { restartDelayMs, RESTART_BACKOFF, Supervisor, type ChildSpec } from '../src/up/supervisor';

/** A child that runs until killed, or exits with `code` right away. */
function child(name: string, exitCode?: number): ChildSpec {
  const script = exitCode === undefined ? 'setInterval(() => {}, 1000)' : `process.exit(${exitCode})`;
  return { name, command: process.execPath, args: ['-e', script] };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('trellis up supervisor restarts', function () {
  this.timeout(20_000);
  const supervisors: Supervisor[] = [];
  afterEach(async () => {
    for (const s of supervisors.splice(0)) await s.stop();
  });

  function supervisor(opts: { stableAfterMs?: number } = {}): Supervisor {
    // Fixed jitter and short delays: the decisions are what is tested, not the clock.
    const s = new Supervisor({ logger: silentLogger, output: new PassThrough(), stableAfterMs: opts.stableAfterMs ?? 400, backoff: { initialMs: 50, maxMs: 400 }, random: () => 1 });
    supervisors.push(s);
    return s;
  }

  it('Should back off 0.5 s doubling to 10 s by default, and restart at once only a sidecar out of credentials on its first such exit since it was ready', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((crashes) => restartDelayMs({ code: 1, crashes, freshCredentialRestarts: 0 }, 1))).to.deep.equal([500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    expect(RESTART_BACKOFF).to.deep.equal({ initialMs: 500, maxMs: 10_000 });
    expect(restartDelayMs({ code: NO_CREDENTIAL_EXIT_CODE, crashes: 6, freshCredentialRestarts: 0 }, 1)).to.equal(0);
    expect(restartDelayMs({ code: NO_CREDENTIAL_EXIT_CODE, crashes: 6, freshCredentialRestarts: 1 }, 1)).to.equal(10_000);
  });

  it('Should grow the delay while a child keeps crashing before it is stable, and start over once it has been ready long enough', async () => {
    const s = supervisor();
    s.start(child('app'));
    const st = (): ReturnType<Supervisor['status']>[number] => s.status()[0]!;
    for (let i = 1; i <= 3; i++) {
      await until(() => st().running && st().restarts === i - 1, `run ${i}`);
      s.crash('app');
      await until(() => st().restarts === i, `crash ${i} counted`);
      expect(st().crashes, `crash ${i} in a row`).to.equal(i);
    }
    await until(() => st().running && st().stable, 'the child ready for its stable time');
    expect(st().crashes, 'the backoff started over').to.equal(0);
    s.crash('app');
    await until(() => st().restarts === 4, 'the next crash counted');
    expect(st().crashes, 'a crash after a stable run is the first of a new series').to.equal(1);
  });

  it('Should not count a child as stable while its readiness probe says it is not ready', async () => {
    const s = supervisor({ stableAfterMs: 200 });
    let ready = false;
    s.start({ ...child('sidecar'), ready: async () => ready });
    await new Promise((r) => setTimeout(r, 900));
    expect(s.status()[0]!.stable).to.equal(false);
    ready = true;
    await until(() => s.status()[0]!.stable, 'stable once ready');
  });

  it('Should restart a child that exits for want of credentials at once, preparing it again, and back off if it does so again before being ready', async () => {
    const s = supervisor();
    let prepared = 0;
    s.start({ ...child('sidecar', NO_CREDENTIAL_EXIT_CODE), prepare: () => prepared++, ready: async () => false });
    await until(() => prepared >= 3, 'three starts');
    const st = s.status()[0]!;
    // The first exit restarted at once (no crash counted); the next ones, never ready in between, back off.
    expect(st.crashes).to.equal(st.restarts - 1);
  });

  it('Should stop a stopLast child (the control plane) only once every other child has exited', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-supervisor-'));
    try {
      // Each writes when it got SIGTERM and when it exits; the sidecar drains for 300 ms in between.
      const script = (name: string, drainMs: number): string =>
        `const fs = require('fs'), f = (w) => fs.writeFileSync(${JSON.stringify(join(dir, name))} + '.' + w, String(Date.now()));` +
        `process.on('SIGTERM', () => { f('term'); setTimeout(() => { f('exit'); process.exit(0); }, ${drainMs}); }); setInterval(() => {}, 1000);`;
      const at = (name: string, what: string): number => Number(readFileSync(join(dir, `${name}.${what}`), 'utf8'));
      const s = supervisor();
      s.start({ name: 'control-plane', command: process.execPath, args: ['-e', script('cp', 0)], stopLast: true });
      s.start({ name: 'shop/sidecar', command: process.execPath, args: ['-e', script('sidecar', 300)] });
      await until(() => s.status().every((c) => c.running), 'both children running');
      // The handlers are installed once the script ran: give it a moment past spawn.
      await new Promise((r) => setTimeout(r, 300));
      await s.stop();
      expect(at('cp', 'term'), 'the control plane signalled only after the sidecar exited').to.be.at.least(at('sidecar', 'exit'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
