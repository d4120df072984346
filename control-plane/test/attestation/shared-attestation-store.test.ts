import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { Registry } from 'prom-client';
import { attestationSetCodec, type AttestationSet } from '../../src/attestation/attestation-document';
import type { AttestationEntry } from '../../src/attestation/attestation-record';
import type { AttestationRecordCollection } from '../../src/attestation/attestation-record-collection';
import { FileAttestationStore } from '../../src/attestation/file-attestation-store';
import { SharedAttestationStore } from '../../src/attestation/shared-attestation-store';
import { fromJoinToken, fromKubernetesPod, identityOnly } from '../../src/attestation/workload-attestation';
import { ControlPlaneError, ControlPlaneErrorCode } from '../../src/errors/control-plane-error';
import { FileDocument } from '../../src/state/file-document';
import { observedAttestations } from '../../src/state/shared-state';
import { StorageHealth } from '../../src/state/storage-health';

const ID = 'spiffe://example.org/ns/shop/sa/cart';
const NOW = Date.parse('2026-01-01T00:00:00Z');
const cart = fromJoinToken(ID, { service: 'cart', labels: { app: 'cart' }, inboundPorts: [8443] });
const byPod = fromKubernetesPod(ID, { namespace: 'shop', name: 'cart-1', uid: 'u-1' });

describe('the previous version\'s single attestation document (read only)', () => {
  it('Should read back join-token and pod records alike', () => {
    const text = JSON.stringify({
      version: 1,
      records: {
        ab: { spiffeId: ID, source: 'join-token', service: 'cart', labels: { app: 'cart' }, inboundPorts: [8443], notAfter: new Date(NOW + 60_000).toISOString() },
        cd: { spiffeId: ID, source: 'kubernetes-pod', pod: { namespace: 'shop', name: 'cart-1', uid: 'u-1' }, notAfter: new Date(NOW + 60_000).toISOString() },
      },
    });
    const doc = attestationSetCodec.parse(text, 'test');
    expect([...doc.records.entries()]).to.deep.equal([['ab', { attestation: cart, notAfterMs: NOW + 60_000 }], ['cd', { attestation: byPod, notAfterMs: NOW + 60_000 }]]);
    expect(attestationSetCodec.parse(attestationSetCodec.format(doc), 'test').records).to.deep.equal(doc.records);
  });

  it('Should leave out, and list, a record that does not parse, keeping the others; a bad envelope is refused naming its source', () => {
    const text = JSON.stringify({
      version: 1,
      records: {
        ab: { spiffeId: ID, source: 'join-token', service: 'cart', labels: { app: 'cart' }, inboundPorts: [8443], notAfter: new Date(NOW + 60_000).toISOString() },
        cd: { spiffeId: ID, source: 'join-token', service: 'cart', labels: {}, inboundPorts: [70000], notAfter: new Date(NOW + 60_000).toISOString() },
        'AB:00': { spiffeId: ID, source: 'join-token', service: 'x', labels: {}, inboundPorts: [], notAfter: new Date(NOW + 60_000).toISOString() },
      },
    });
    const doc = attestationSetCodec.parse(text, 'ConfigMap x');
    expect([...doc.records.keys()]).to.deep.equal(['ab']);
    expect(doc.rejected).to.have.length(2);
    expect(doc.rejected[0]).to.match(/^cd: /);
    expect(() => attestationSetCodec.parse('{"version":2,"records":{}}', 'ConfigMap x')).to.throw(/ConfigMap x: version/);
    expect(() => attestationSetCodec.parse('nope', 'ConfigMap x')).to.throw(/ConfigMap x: not JSON/);
  });
});

/**
 * The shared collection as a map (the API-server one is tested against a
 * real API server in test/integration/k8s-shared-state.test.ts): every
 * replica given the same one sees every record at once; `down` fails every
 * write as an unreachable API server does.
 */
class MemoryRecords implements AttestationRecordCollection {
  readonly records = new Map<string, AttestationEntry>();
  /** Writes per serial. */
  readonly writes = new Map<string, number>();
  down = false;
  async add(serial: string, entry: AttestationEntry): Promise<void> {
    await new Promise((r) => setImmediate(r));
    if (this.down) throw new ControlPlaneError(ControlPlaneErrorCode.ATTESTATION_STORE, `attestation record ${serial}: API server unreachable`, { reason: 'UNREACHABLE' });
    this.writes.set(serial, (this.writes.get(serial) ?? 0) + 1);
    this.records.set(serial, entry);
  }
  get(serial: string): AttestationEntry | null {
    return this.records.get(serial) ?? null;
  }
  entries(): Iterable<AttestationEntry> {
    return this.records.values();
  }
}

describe('SharedAttestationStore', () => {
  const dirs: Array<{ dir: string; cleanup(): void }> = [];
  const tmp = (): string => {
    const d = makeTmpDir();
    dirs.push(d);
    return d.dir;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) d.cleanup();
  });
  /** A replica: its own CA dir, and the collection every replica shares. */
  const replica = (records: AttestationRecordCollection, o: { retry?: { initialMs: number; maxMs: number }; legacy?: FileDocument<AttestationSet> } = {}): SharedAttestationStore =>
    new SharedAttestationStore(records, { local: new FileAttestationStore(tmp()), nowMs: () => NOW, retry: o.retry, legacy: o.legacy });
  const until = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  };

  it('Should let another replica recall what one replica remembered, only for its own identity and until the SVID expires', async () => {
    const shared = new MemoryRecords();
    const a = replica(shared);
    const b = replica(shared);
    await a.remember('00AB:CD', cart, NOW + 60_000, NOW);
    await a.remember('ef', byPod, NOW + 60_000, NOW);
    await a.remember('99', identityOnly(ID), NOW + 60_000, NOW);
    expect(b.recall('abcd', ID, NOW)).to.deep.equal(cart);
    expect(b.recall('ef', ID, NOW)).to.deep.equal(byPod);
    expect(b.recall('99', ID, NOW), 'an identity-only attestation is not written').to.equal(null);
    expect(b.recall('abcd', 'spiffe://example.org/ns/shop/sa/rogue', NOW)).to.equal(null);
    expect(b.recall('abcd', ID, NOW + 60_000)).to.equal(null);
    expect(b.recall('../x', ID, NOW)).to.equal(null);
    expect([...b.liveIdentities(NOW)]).to.deep.equal([ID]);
  });

  it('Should write a burst of issuances as one write per record, never rewriting another record', async () => {
    const shared = new MemoryRecords();
    const store = replica(shared);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.remember((i + 1).toString(16), cart, NOW + 60_000, NOW)));
    expect(shared.records.size).to.equal(50);
    expect([...shared.writes.values()].every((n) => n === 1), 'each record written once').to.equal(true);
    await store.remember('ff', cart, NOW + 60_000, NOW);
    expect([...shared.writes.values()].reduce((x, y) => x + y), 'a later issuance writes its own record only').to.equal(51);
  });

  it('Should hand the SVID out while the shared records cannot be written (an API server outage), serve renewals here meanwhile, report each failed and then the landed write, and share the record once a retry lands', async () => {
    const shared = new MemoryRecords();
    shared.down = true;
    const a = replica(shared, { retry: { initialMs: 5, maxMs: 20 } });
    const b = replica(shared);
    const outcomes: Array<string | null> = [];
    a.onWriteOutcome((err) => outcomes.push(err === null ? null : (err as ControlPlaneError).code));
    await a.remember('ab', cart, NOW + 60_000, NOW);
    await a.remember('cd', cart, NOW + 60_000, NOW);
    expect(a.recall('ab', ID, NOW), 'renewals on the issuing replica').to.deep.equal(cart);
    expect(b.recall('ab', ID, NOW), 'another replica attests the identity alone until it is shared').to.equal(null);
    expect(a.unshared).to.equal(2);
    await until(() => outcomes.length >= 2);
    expect(outcomes.slice(0, 2)).to.deep.equal(['TRELLIS_CP_ATTESTATION_STORE', 'TRELLIS_CP_ATTESTATION_STORE']);
    shared.down = false;
    await until(() => a.unshared === 0);
    expect(a.unshared, 'the retry landed').to.equal(0);
    expect(outcomes.at(-1), 'the landed write is reported').to.equal(null);
    expect(b.recall('cd', ID, NOW)).to.deep.equal(cart);
    a.close();
  });

  it('Should make the control plane not ready, with the reason, while shared writes fail, and ready again by itself once one lands', async () => {
    const shared = new MemoryRecords();
    const health = new StorageHealth(tmp(), { registry: new Registry(), sharedBackend: 'api-server', nowMs: () => NOW });
    const store = replica(shared, { retry: { initialMs: 5, maxMs: 20 } });
    const observed = observedAttestations(store, health);
    shared.down = true;
    await observed.remember('ab', cart, NOW + 60_000, NOW);
    await until(() => health.current().length > 0);
    expect(health.current().map((f) => [f.store, f.reason])).to.deep.equal([['attestations', 'UNREACHABLE']]);
    expect(health.reasons()[0]).to.match(/state store attestations cannot be written .*UNREACHABLE/);
    health.record('replica-report', null);
    expect(health.current().map((f) => f.store), 'a replica report written elsewhere on the API server does not clear it').to.deep.equal(['attestations']);
    shared.down = false;
    await until(() => health.current().length === 0);
    expect(health.current()).to.deep.equal([]);
    store.close();
  });

  it('Should recall the records the previous version kept in one document, until they expire, without writing to it', async () => {
    const file = join(tmp(), 'attestations.json');
    writeFileSync(file, JSON.stringify({ version: 1, records: { ab: { spiffeId: ID, source: 'join-token', service: 'cart', labels: { app: 'cart' }, inboundPorts: [8443], notAfter: new Date(NOW + 60_000).toISOString() } } }));
    const legacy = new FileDocument(file, attestationSetCodec);
    const shared = new MemoryRecords();
    const store = replica(shared, { legacy });
    expect(store.recall('ab', ID, NOW)).to.deep.equal(cart);
    expect(store.recall('ab', ID, NOW + 60_000)).to.equal(null);
    expect([...store.liveIdentities(NOW)]).to.deep.equal([ID]);
    await store.remember('cd', cart, NOW + 60_000, NOW);
    expect(legacy.current().records.size, 'new records go to the collection').to.equal(1);
    expect(shared.records.size).to.equal(1);
  });

  it('Should refuse with TRELLIS_CP_ATTESTATION_STORE, sharing nothing, when this replica\'s CA dir cannot be written', async () => {
    const caDir = tmp();
    writeFileSync(join(caDir, 'attestations'), 'a file where the directory should be');
    const shared = new MemoryRecords();
    const store = new SharedAttestationStore(shared, { local: new FileAttestationStore(caDir), nowMs: () => NOW });
    let err: unknown;
    await store.remember('ab', cart, NOW + 60_000, NOW).catch((e: unknown) => (err = e));
    expect(err).to.include({ code: 'TRELLIS_CP_ATTESTATION_STORE' });
    expect(shared.records.size).to.equal(0);
  });
});
