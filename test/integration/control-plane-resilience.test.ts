/**
 * Operations under stress, with real processes: a restart that sidecars
 * resync with without needless pushes, two replicas on the same dirs with
 * failover, SIGTERM drain, and a signing queue that refuses a herd with
 * RESOURCE_EXHAUSTED and a retry hint instead of falling over.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { adminGet, adminJson, FakeSidecar, initCa, joinToken, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

const TYPES = ['bundle', 'peer_authn', 'authz', 'revocations', 'endpoints'];

async function metric(cp: ControlPlaneProcess, name: string, labels = ''): Promise<number> {
  const text = (await adminGet(cp, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? '{' + labels + '}' : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('control plane restart, replicas and overload (real processes)', function () {
  this.timeout(90_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let policyDir: string;
  const procs: ControlPlaneProcess[] = [];
  const sidecars: FakeSidecar[] = [];

  before(() => {
    tmp = makeTmpDir('trellis-cp-resilience-');
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    for (const p of procs) await p.stop('SIGKILL');
    tmp?.cleanup();
  });

  async function start(extra: string[] = [], ports?: { port: number; adminPort: number }): Promise<ControlPlaneProcess> {
    const p = await startControlPlaneProcess(caDir, policyDir, extra, ports);
    procs.push(p);
    return p;
  }

  /**
   * Whether `cp` shows `id` on exactly one stream, authenticated by its SVID, with every type SYNCED.
   * rotate() resolves when the SVID arrives; the sidecar then moves to a stream opened with it,
   * subscribing with the versions it holds at that moment, and an update that reached the old stream
   * meanwhile (its own endpoint, pushed after a debounce) is sent once more on the new one. Counting
   * pushes is only meaningful once that move is over.
   */
  async function settled(cp: ControlPlaneProcess, id: string): Promise<boolean> {
    const streams = (await adminJson<{ proxies: Array<{ spiffeId: string; authMethod: string; types: Record<string, { state: string }> }> }>(cp, '/debug/proxies')).proxies.filter((x) => x.spiffeId === id);
    return streams.length === 1 && streams[0]!.authMethod === 'svid' && TYPES.every((t) => streams[0]!.types[t]?.state === 'SYNCED');
  }

  function counts(s: FakeSidecar): number[] {
    return TYPES.map((t) => s.count(t));
  }

  it('drains on SIGTERM, and after a restart the sidecar resyncs over mTLS without re-sent updates', async () => {
    const cp = await start();
    const id = `spiffe://${TD}/ns/shop/sa/restarter`;
    const token = joinToken(caDir, id, ['--uses', '1', '--service', 'restarter', '--ports', '9090']);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'shop', service: 'restarter', inboundPorts: [9090] });
    sidecars.push(s);
    s.start();
    await s.rotate();
    await waitFor(() => TYPES.every((t) => s.last(t) !== undefined), 'the initial sync');
    await waitFor(() => settled(cp, id), 'the sidecar settled on its SVID stream');
    const before = counts(s);
    const connectsBefore = s.connects;

    expect(await cp.stop('SIGTERM')).to.equal(0);
    expect(cp.logs.some((l) => l.includes('"control plane draining"'))).to.equal(true);
    expect(s.ends.map((e) => e.serverCode)).to.include('TRELLIS_CP_SHUTTING_DOWN');

    const again = await start([], { port: cp.port, adminPort: cp.adminPort });
    await waitFor(() => s.connects > connectsBefore, 'the sidecar to reconnect');
    await waitFor(async () => {
      const p = (await adminJson<{ proxies: Array<{ spiffeId: string; authMethod: string; types: Record<string, { state: string }> }> }>(again, '/debug/proxies')).proxies.find((x) => x.spiffeId === id);
      return !!p && p.authMethod === 'svid' && TYPES.every((t) => p.types[t]!.state === 'SYNCED');
    }, 'the restarted control plane to show the sidecar SYNCED');
    // Same dirs, same content, same versions: nothing needed re-sending.
    expect(counts(s)).to.deep.equal(before);
    expect(await metric(again, 'trellis_discovery_pushes_total', 'type="authz"')).to.equal(0);
    s.stop();
    await again.stop();
  });

  it('runs two replicas on the same dirs; a sidecar given both fails over when one dies', async () => {
    const a = await start();
    const b = await start();
    const id = `spiffe://${TD}/ns/shop/sa/failover`;
    const token = joinToken(caDir, id, ['--uses', '1']);
    const s = new FakeSidecar({ addresses: [a.address, b.address], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
    sidecars.push(s);
    s.start();
    await s.rotate();
    await waitFor(() => TYPES.every((t) => s.last(t) !== undefined), 'the initial sync');
    await waitFor(() => settled(a, id), 'the sidecar settled on its SVID stream');
    expect(s.client.connection().address).to.equal(a.address);
    const before = counts(s);

    await a.stop('SIGKILL');
    await waitFor(() => s.client.connection().address === b.address, 'failover to replica b');
    await waitFor(async () => (await adminJson<{ proxies: Array<{ spiffeId: string }> }>(b, '/debug/proxies')).proxies.some((p) => p.spiffeId === id), 'replica b to list the sidecar');
    expect(counts(s)).to.deep.equal(before);
    // And it can still renew there.
    await s.rotate();
    s.stop();
    await b.stop();
  });

  it('refuses a signing herd beyond the queue with RESOURCE_EXHAUSTED and a retry hint; every sidecar still gets its SVID', async () => {
    // 40 sidecars of one identity (replicas sharing a ServiceAccount): the stream cap must cover them.
    const cp = await start(['--signing-concurrency', '1', '--signing-queue', '1', '--max-streams-per-identity', '40']);
    const id = `spiffe://${TD}/ns/shop/sa/herd`;
    const token = joinToken(caDir, id, ['--uses', '200']);
    const herd = Array.from({ length: 40 }, () => {
      const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
      sidecars.push(s);
      return s.start();
    });
    const leaves = await Promise.all(herd.map((s) => s.rotate()));
    expect(new Set(leaves.map((l) => l.serialNumber)).size).to.equal(herd.length);
    expect(await metric(cp, 'trellis_svids_refused_total', 'reason="TRELLIS_CP_OVERLOADED"')).to.be.greaterThan(0);
    const refused = herd.flatMap((s) => s.ends).filter((e) => e.serverCode === 'TRELLIS_CP_OVERLOADED');
    expect(refused.length).to.be.greaterThan(0);
    for (const e of refused) expect(e.retryAfterMs).to.be.at.least(100);
    expect((await adminGet(cp, '/healthz')).status).to.equal(200);
    for (const s of herd) s.stop();
    await cp.stop();
  });

  it('pushes the two-root bundle of a root rotation to connected sidecars without a restart', async () => {
    const cp = await start();
    const id = `spiffe://${TD}/ns/shop/sa/bundle-watcher`;
    const token = joinToken(caDir, id);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
    sidecars.push(s);
    s.start();
    await waitFor(() => s.count('bundle') === 1, 'the first bundle');
    expect((s.bodies.get('bundle') as Array<{ rootsPem: string[] }>)[0]!.rootsPem).to.have.length(1);
    const r = trellisSync(['ca', 'rotate-root', '--ca-dir', caDir, '--root-dir', join(tmp.dir, 'new-root')]);
    expect(r.status, r.stderr).to.equal(0);
    await waitFor(() => s.count('bundle') === 2, 'the two-root bundle');
    expect((s.bodies.get('bundle') as Array<{ rootsPem: string[] }>)[0]!.rootsPem).to.have.length(2);
    await waitFor(async () => (await adminJson<{ proxies: Array<{ spiffeId: string; types: Record<string, { state: string }> }> }>(cp, '/debug/proxies')).proxies.find((p) => p.spiffeId === id)?.types['bundle']?.state === 'SYNCED', 'the bundle ACK');
    s.stop();
    await cp.stop();
  });

  it('exits 1 on a bad config file, naming the file and every bad field', () => {
    const file = join(tmp.dir, 'bad.yaml');
    writeFileSync(file, 'svidTtl: soon\nlisten: 15012\nkubernetes:\n  audience: trellis\n');
    const r = trellisSync(['control-plane', '--config', file, '--ca-dir', caDir, '--policy-dir', policyDir]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('TRELLIS_CP_CONFIG_INVALID');
    for (const field of ['/svidTtl', '/listen', '/kubernetes']) expect(r.stderr).to.include(`${file}: ${field}`);
  });

  it('exits 1 when the configured trust domain is not the CA\'s', () => {
    const r = trellisSync(['control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--trust-domain', 'other.org', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('TRELLIS_CP_CONFIG_INVALID');
  });

  it('refuses to mint a join token outside the CA\'s trust domain (usage error, exit 2)', () => {
    const r = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', 'spiffe://other.org/vm/x']);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.include('trust domain');
  });
});
