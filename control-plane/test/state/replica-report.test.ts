import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { liveReplicas, mergedEndpoints, remoteProxies, replicaSetCodec, withoutReport, withReport, type ReplicaReport } from '../../src/state/replica-report';
import { applyMirroredFiles, readMirroredFiles } from '../../src/kubernetes/ca-secret-sync';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const report = (replica: string, o: Partial<ReplicaReport> = {}): ReplicaReport => ({ replica, host: 'h1', pid: 100, at: new Date(T0).toISOString(), endpoints: [], sidecars: 0, bundleAcks: {}, ...o });

describe('replica reports', () => {
  it('Should count as live only the other replicas whose heartbeat is fresh and whose pid runs on this machine', () => {
    const set = { a: report('a'), b: report('b', { at: new Date(T0 - 10_000).toISOString() }), c: report('c', { pid: 200 }), d: report('d', { host: 'h2', pid: 200 }), self: report('self') };
    const live = liveReplicas(set, 'self', T0 + 1000, { staleMs: 6000, host: 'h1', pidAlive: (pid) => pid === 100 });
    expect(live.map((r) => r.replica)).to.deep.equal(['a', 'd']);
  });

  it('Should serve the other replicas\' endpoints beside ours, one list per service, without duplicates, and keep our map when they add nothing', () => {
    const local = new Map([['cart', { service: 'cart', endpoints: [{ address: '10.0.0.2:80', spiffeId: 'spiffe://td/cart' }] }]]);
    expect(mergedEndpoints(local, [report('b')])).to.equal(local);
    const merged = mergedEndpoints(local, [report('b', { endpoints: [{ service: 'cart', endpoints: [{ address: '10.0.0.1:80', spiffeId: 'spiffe://td/cart' }, { address: '10.0.0.2:80', spiffeId: 'spiffe://td/cart' }] }, { service: 'pay', endpoints: [{ address: '10.0.0.3:80', spiffeId: 'spiffe://td/pay' }] }] })]);
    expect([...merged.keys()]).to.deep.equal(['cart', 'pay']);
    expect(merged.get('cart')!.endpoints.map((e) => e.address)).to.deep.equal(['10.0.0.1:80', '10.0.0.2:80']);
  });

  it('Should show the root rotation one entry per remote sidecar with the bundle version it ACKed, and none for those that ACKed nothing', () => {
    const p = remoteProxies([report('b', { sidecars: 3, bundleAcks: { v2: 1, v1: 1 } })]);
    expect(p.map((x) => x.bundleAckedVersion)).to.deep.equal(['v1', 'v2', null]);
  });

  it('Should replace its own entry, drop long-stale ones, withdraw on stop, and refuse a damaged document naming the field', () => {
    const set = withReport({ old: report('old', { at: new Date(T0 - 120_000).toISOString() }), b: report('b') }, report('a'), T0, 60_000);
    expect(Object.keys(set).sort()).to.deep.equal(['a', 'b']);
    expect(Object.keys(withoutReport(set, 'a'))).to.deep.equal(['b']);
    expect(replicaSetCodec.parse(replicaSetCodec.format(set), 'x')).to.deep.equal(set);
    expect(() => replicaSetCodec.parse(JSON.stringify({ version: 1, replicas: { a: { ...report('a'), sidecars: 'many' } } }), 'replicas.json')).to.throw('replicas.json: replicas.a.sidecars is missing or invalid');
  });
});

describe('the CA dir mirrored from Secret trellis-ca', () => {
  it('Should write what the Secret holds (keys 0600), remove what it no longer holds (an emptied next/ slot), and never touch other files', () => {
    const tmp = makeTmpDir('trellis-mirror-');
    try {
      const dir = tmp.dir;
      mkdirSync(join(dir, 'next'));
      for (const [p, c] of [['root.pem', 'R1'], ['intermediate.pem', 'I1'], ['intermediate.key', 'K1'], ['chain.pem', 'C1'], ['next/intermediate.key', 'NK'], ['audit.log', 'log'], ['root.key', 'never mirrored']]) writeFileSync(join(dir, p!), c!);
      const b64 = (s: string): string => Buffer.from(s).toString('base64');
      expect(readMirroredFiles(dir)).to.deep.equal({ 'root.pem': b64('R1'), 'intermediate.pem': b64('I1'), 'intermediate.key': b64('K1'), 'chain.pem': b64('C1'), 'next.intermediate.key': b64('NK') });
      const changed = applyMirroredFiles(dir, { 'root.pem': b64('R1R2'), 'intermediate.pem': b64('I2'), 'intermediate.key': b64('K2'), 'chain.pem': b64('C2'), 'previous.intermediate.pem': b64('I1'), 'root-rotation.json': b64('{}') });
      expect(changed.sort()).to.deep.equal(['chain.pem', 'intermediate.key', 'intermediate.pem', join('next', 'intermediate.key'), join('previous', 'intermediate.pem'), 'root-rotation.json', 'root.pem'].sort());
      expect(readFileSync(join(dir, 'intermediate.key'), 'utf8')).to.equal('K2');
      expect(statSync(join(dir, 'intermediate.key')).mode & 0o777).to.equal(0o600);
      expect(existsSync(join(dir, 'next')), 'the emptied slot is gone').to.equal(false);
      expect(readFileSync(join(dir, 'audit.log'), 'utf8')).to.equal('log');
      expect(readFileSync(join(dir, 'root.key'), 'utf8')).to.equal('never mirrored');
    } finally {
      tmp.cleanup();
    }
  });
});
