/**
 * A flood of idle TCP connections against a STRICT port of a real sidecar
 * process, on each data path: pending handshakes are capped, the excess is
 * refused and counted, real mTLS clients still get through, and the
 * process's resident memory comes back once the flood is gone.
 *
 * RSS is read from /proc of a fresh child process (inside mocha it carries
 * every earlier test's heap). Nothing here is a timed assertion: memory is
 * polled until it settles, with a generous deadline.
 */
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { TestCa, waitFor, type TestCert } from '@trellis/testkit';
import { DEFAULT_MAX_PENDING_HANDSHAKES, dataPaths } from './helpers/harness';
import { startEchoApp, tlsExchange } from './helpers/fixture';
import type { SidecarProcessInput } from './helpers/sidecar-process';

type Leaf = TestCert & { chainPem: string };

const TD = 'cluster.local';
const MB = 1024 * 1024;
const FLOOD = 5000;
/** The bound the issue sets: back within 10 MB of idle after the flood. */
const RSS_SLACK = 10 * MB;

/** Resident set size of `pid`, in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** RSS once it stops moving: four samples 500 ms apart within 1 MB of each other (or after 20 s). */
async function settledRss(pid: number): Promise<number> {
  const samples: number[] = [];
  const end = Date.now() + 20_000;
  for (;;) {
    samples.push(rss(pid));
    const last = samples.slice(-4);
    if ((last.length === 4 && Math.max(...last) - Math.min(...last) < MB) || Date.now() > end) return last[last.length - 1]!;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** One counter or gauge value from Prometheus text (0 when absent). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue;
    if (!/^(\{[^}]*\})?\s/.test(rest)) continue;
    return Number(rest.trim().split(/\s+/).pop());
  }
  return 0;
}

/** The descriptor limit this process runs with (the flood's sockets are ours too). */
function ownDescriptorLimit(): number {
  const r = spawnSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' });
  return r.stdout.trim() === 'unlimited' ? Infinity : Number(r.stdout.trim());
}

/** A sidecar process (sidecar-process.js) with room for the flood; resolves with it and its port. */
async function startSidecarProcess(input: SidecarProcessInput): Promise<{ child: ChildProcess; port: number; startedAt: number; stats(): Promise<string>; stderr(): string }> {
  const startedAt = Date.now();
  // exec: the pid is node's, so /proc/<pid> is the sidecar's own memory.
  const child = spawn('bash', ['-c', `ulimit -n 8192 && exec "${process.execPath}" "${join(__dirname, 'helpers', 'sidecar-process.js')}"`], {
    stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += String(d);
      if (out.includes('\n')) resolve((JSON.parse(out) as { port: number }).port);
    });
    child.on('exit', (code) => reject(new Error(`sidecar exited with ${code}: ${stderr}`)));
    child.stdin!.end(JSON.stringify(input));
  });
  const stats = (): Promise<string> =>
    new Promise((resolve) => {
      const onMessage = (m: unknown): void => {
        if (typeof m === 'object' && m !== null && 'stats' in m) {
          child.off('message', onMessage);
          resolve((m as { stats: string }).stats);
        }
      };
      child.on('message', onMessage);
      child.send('stats');
    });
  return { child, port, startedAt, stats, stderr: () => stderr };
}

for (const dataPath of dataPaths()) describe(`A flood of idle connections to a STRICT port [${dataPath}]`, function () {
  this.timeout(180_000);
  let ca: TestCa;
  let client: Leaf;
  let server: Leaf;

  before(async () => {
    ca = await TestCa.create(TD);
    server = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/cart`);
    client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
  });

  it(`Should cap pending handshakes at ${DEFAULT_MAX_PENDING_HANDSHAKES}, refuse and count the rest, keep serving mTLS, and give its memory back`, async () => {
    const limit = ownDescriptorLimit();
    expect(limit, `this test holds ${FLOOD} sockets open: raise the descriptor limit (ulimit -n) of the test run`).to.be.at.least(FLOOD + 500);
    const echo = await startEchoApp();
    // The default cap; a short handshake timeout so that held connections free their slots within the test.
    const sc = await startSidecarProcess({
      keyPem: server.key.keyPem,
      chainPem: server.chainPem,
      rootPem: ca.root.pem,
      appPort: echo.port,
      dataPath,
      handshakeTimeoutMs: 4000,
    });
    const pid = sc.child.pid!;
    const flood: Socket[] = [];
    const exchange = (payload: string): Promise<boolean> =>
      tlsExchange(sc.port, { client, ca: ca.root.pem, payload, timeoutMs: 3000 }).then((r) => r.data === `echo:${payload}`);
    try {
      // Idle = after real traffic (the TLS contexts built, the code paths warm),
      // and after V8's memory reducer finished the rounds it runs in a new
      // process's first ~10 s: from then on nothing but the sidecar itself
      // gives back what a burst takes (measured otherwise: +16 MB for good).
      for (let i = 0; i < 20; i++) expect(await exchange(`warm-up ${i}`)).to.equal(true);
      await new Promise((r) => setTimeout(r, Math.max(0, sc.startedAt + 12_000 - Date.now())));
      const idle = await settledRss(pid);

      let closedBySidecar = 0;
      let connected = 0;
      let peak = idle;
      for (let i = 0; i < FLOOD; i += 250) {
        await Promise.all(
          Array.from({ length: Math.min(250, FLOOD - i) }, () =>
            new Promise<void>((resolve) => {
              const s = netConnect({ host: '127.0.0.1', port: sc.port });
              s.on('error', () => resolve());
              s.on('connect', () => {
                connected++;
                resolve();
              });
              s.on('close', () => {
                closedBySidecar++;
                resolve();
              });
              flood.push(s);
            }),
          ),
        );
        peak = Math.max(peak, rss(pid));
      }
      // A connection is 'connect'ed here once the kernel has queued it; the sidecar accepts it when its
      // loop gets to it, which on a loaded machine is well after the last 'connect'. Count the refusals
      // once the sidecar has taken every connection that reached its queue (the 20 warm-ups, then the flood).
      let stats = '';
      await waitFor('the sidecar to accept every flood connection', async () => {
        stats = await sc.stats();
        return metric(stats, 'trellis_connections_total', { direction: 'inbound' }) >= 20 + connected;
      }, 60_000);
      peak = Math.max(peak, rss(pid));
      const atCap = metric(stats, 'trellis_refusals_total', { reason: 'handshake_limit' });
      const timedOut = metric(stats, 'trellis_refusals_total', { reason: 'handshake_timeout' });
      const pending = metric(stats, 'trellis_handshakes_pending');
      // Each flood connection was either refused at the cap or given a slot,
      // and a slot only frees when its connection times out.
      expect(pending).to.be.at.most(DEFAULT_MAX_PENDING_HANDSHAKES);
      expect(atCap).to.be.at.least(FLOOD - DEFAULT_MAX_PENDING_HANDSHAKES - timedOut);
      // Every refusal reaches this process as a close, read when our own (loaded) loop gets to it.
      await waitFor('the refused connections\' closes to arrive', () => closedBySidecar >= atCap, 30_000);
      expect(closedBySidecar, 'the refused connections were closed at once').to.be.at.least(atCap);

      // During the flood (its sockets still open): a real client gets through
      // once the idle connections holding the slots time out.
      await waitFor('an mTLS exchange during the flood', () => exchange('during the flood'), 60_000);
      peak = Math.max(peak, rss(pid));

      for (const s of flood) s.destroy();
      // The figure asserted is where RSS settles, not the first sample under
      // the bound (one taken before the sidecar has even read the closes
      // passes early). When it settles depends on timing: the shrink runs
      // 2, 3 and 8 s after the last burst ends, a burst that ends within
      // 30 s of the previous run waits for the rest of those 30 s, and a
      // loaded machine fires all of that late. So poll the settled figure
      // until it is within the bound, with a deadline past all of that.
      let after = Infinity;
      await waitFor(
        `RSS to settle within 10 MB of idle (${(idle / MB).toFixed(1)} MB)`,
        async () => {
          after = await settledRss(pid);
          return after <= idle + RSS_SLACK;
        },
        90_000,
        0,
      );
      expect(after).to.be.at.most(idle + RSS_SLACK);
      expect(await exchange('after the flood')).to.equal(true);
      expect(sc.child.exitCode, sc.stderr()).to.equal(null);
      // eslint-disable-next-line no-console
      console.log(`      [${dataPath}] RSS idle ${(idle / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB, after ${(after / MB).toFixed(1)} MB; refused at the cap: ${atCap}`);
    } finally {
      for (const s of flood) s.destroy();
      sc.child.kill('SIGKILL');
      await echo.close();
    }
  });
});
