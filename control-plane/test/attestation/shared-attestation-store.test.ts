import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { attestationSetCodec, withAttestations, type AttestationSet } from '../../src/attestation/attestation-document';
import { FileAttestationStore } from '../../src/attestation/file-attestation-store';
import { SharedAttestationStore } from '../../src/attestation/shared-attestation-store';
import { fromJoinToken, fromKubernetesPod, identityOnly } from '../../src/attestation/workload-attestation';
import { FileDocument } from '../../src/state/file-document';
import type { SharedDocument } from '../../src/state/shared-document';

const ID = 'spiffe://example.org/ns/shop/sa/cart';
const NOW = Date.parse('2026-01-01T00:00:00Z');
const cart = fromJoinToken(ID, { service: 'cart', labels: { app: 'cart' }, inboundPorts: [8443] });
const byPod = fromKubernetesPod(ID, { namespace: 'shop', name: 'cart-1', uid: 'u-1' });

describe('the shared attestation document (pure)', () => {
  it('Should read back what it wrote, join-token and pod records alike', () => {
    const doc = withAttestations(attestationSetCodec.empty, [
      { serial: 'ab', entry: { attestation: cart, notAfterMs: NOW + 60_000 } },
      { serial: 'cd', entry: { attestation: byPod, notAfterMs: NOW + 60_000 } },
    ], NOW);
    const back = attestationSetCodec.parse(attestationSetCodec.format(doc), 'test');
    expect([...back.records.entries()]).to.deep.equal([...doc.records.entries()]);
    expect(back.rejected).to.deep.equal([]);
  });

  it('Should drop the records of expired SVIDs on every change, so the document stays bounded', () => {
    const old = withAttestations(attestationSetCodec.empty, [{ serial: 'a1', entry: { attestation: cart, notAfterMs: NOW + 1000 } }], NOW);
    const next = withAttestations(old, [{ serial: 'b2', entry: { attestation: cart, notAfterMs: NOW + 120_000 } }], NOW + 1000);
    expect([...next.records.keys()]).to.deep.equal(['b2']);
  });

  it('Should refuse a change that would make the document larger than a ConfigMap holds, naming the limit', () => {
    const added = Array.from({ length: 20 }, (_, i) => ({ serial: (i + 1).toString(16), entry: { attestation: cart, notAfterMs: NOW + 60_000 } }));
    expect(() => withAttestations(attestationSetCodec.empty, added, NOW, 2000))
      .to.throw()
      .with.property('code', 'TRELLIS_CP_ATTESTATION_STORE');
    try {
      withAttestations(attestationSetCodec.empty, added, NOW, 2000);
    } catch (err) {
      expect((err as { details: Record<string, unknown> }).details).to.include({ reason: 'TOO_LARGE', records: 20 });
    }
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
  /** A replica: its own CA dir, and the document every replica shares. */
  const replica = (doc: SharedDocument<AttestationSet>, o: { retry?: { initialMs: number; maxMs: number } } = {}): SharedAttestationStore =>
    new SharedAttestationStore(doc, { local: new FileAttestationStore(tmp()), nowMs: () => NOW, retry: o.retry });

  it('Should let another replica recall what one replica remembered, only for its own identity and until the SVID expires', async () => {
    const file = join(tmp(), 'attestations.json');
    const a = replica(new FileDocument(file, attestationSetCodec));
    const bDoc = new FileDocument(file, attestationSetCodec);
    const b = replica(bDoc);
    await a.remember('00AB:CD', cart, NOW + 60_000, NOW);
    await a.remember('ef', byPod, NOW + 60_000, NOW);
    await a.remember('99', identityOnly(ID), NOW + 60_000, NOW);
    await bDoc.refresh();
    expect(b.recall('abcd', ID, NOW)).to.deep.equal(cart);
    expect(b.recall('ef', ID, NOW)).to.deep.equal(byPod);
    expect(b.recall('99', ID, NOW), 'an identity-only attestation is not written').to.equal(null);
    expect(b.recall('abcd', 'spiffe://example.org/ns/shop/sa/rogue', NOW)).to.equal(null);
    expect(b.recall('abcd', ID, NOW + 60_000)).to.equal(null);
    expect(b.recall('../x', ID, NOW)).to.equal(null);
    expect([...b.liveIdentities(NOW)]).to.deep.equal([ID]);
  });

  it('Should write a burst of issuances in a few writes, every record kept', async () => {
    const inner = new FileDocument(join(tmp(), 'attestations.json'), attestationSetCodec);
    let writes = 0;
    const store = replica({ ...bind(inner), update: (change) => (writes++, inner.update(change)) });
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.remember((i + 1).toString(16), cart, NOW + 60_000, NOW)));
    expect(inner.current().records.size).to.equal(50);
    expect(writes).to.be.at.most(2);
  });

  it('Should hand the SVID out while the shared document cannot be written (an API server outage), serve renewals here meanwhile, and share the record once a retry lands', async () => {
    const file = join(tmp(), 'attestations.json');
    const inner = new FileDocument(file, attestationSetCodec);
    let down = true;
    const a = replica({ ...bind(inner), update: (change) => (down ? Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })) : inner.update(change)) }, { retry: { initialMs: 5, maxMs: 20 } });
    const bDoc = new FileDocument(file, attestationSetCodec);
    const b = replica(bDoc);
    await a.remember('ab', cart, NOW + 60_000, NOW);
    await a.remember('cd', cart, NOW + 60_000, NOW);
    expect(a.recall('ab', ID, NOW), 'renewals on the issuing replica').to.deep.equal(cart);
    expect(a.unshared).to.equal(2);
    down = false;
    for (let i = 0; i < 500 && a.unshared > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(a.unshared, 'the retry landed').to.equal(0);
    await bDoc.refresh();
    expect(b.recall('cd', ID, NOW)).to.deep.equal(cart);
    a.close();
  });

  it('Should refuse with TRELLIS_CP_ATTESTATION_STORE, sharing nothing, when this replica\'s CA dir cannot be written', async () => {
    const caDir = tmp();
    writeFileSync(join(caDir, 'attestations'), 'a file where the directory should be');
    const inner = new FileDocument(join(tmp(), 'attestations.json'), attestationSetCodec);
    const store = new SharedAttestationStore(inner, { local: new FileAttestationStore(caDir), nowMs: () => NOW });
    let err: unknown;
    await store.remember('ab', cart, NOW + 60_000, NOW).catch((e: unknown) => (err = e));
    expect(err).to.include({ code: 'TRELLIS_CP_ATTESTATION_STORE' });
    expect(inner.current().records.size).to.equal(0);
  });
});

function bind<T>(d: SharedDocument<T>): SharedDocument<T> {
  return { current: () => d.current(), refresh: () => d.refresh(), update: (c) => d.update(c), subscribe: (l) => d.subscribe(l), close: () => d.close() };
}
