import { expect } from 'chai';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { judgeNode, type NodeVerdict } from '../../src/attestation/node-claims';
import { FileAttestationStore } from '../../src/attestation/file-attestation-store';
import { fromJoinToken, fromKubernetesPod, identityOnly } from '../../src/attestation/workload-attestation';
import type { PodFacts } from '../../src/registry/pod-facts';
import { workloadMetadataProblems } from '../../src/attestation/workload-metadata';
import { createJoinToken, verifyJoinToken } from '../../src/auth/join-token';

const ID = 'spiffe://example.org/ns/shop/sa/payments';
const attested = fromJoinToken(ID, { service: 'payments', labels: { app: 'payments', tier: 'backend' }, inboundPorts: [8080, 8443] });

describe('node claims against the attestation (pure)', () => {
  const refusals: Array<[string, Record<string, unknown>, string, string | undefined]> = [
    ['another service', { service: 'ledger' }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'service'],
    ['one label more', { labels: { app: 'payments', tier: 'backend', admin: 'true' } }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'labels'],
    ['one label less (a DENY selecting it would not apply)', { labels: { app: 'payments' } }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'labels'],
    ['another label value', { labels: { app: 'ledger', tier: 'backend' } }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'labels'],
    ['a port not attested', { inbound_ports: [8080, 9090] }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'ports'],
    ['an address it does not come from', { address: '10.0.0.99' }, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'address'],
    ['another namespace', { namespace: 'finance' }, 'TRELLIS_CP_IDENTITY_MISMATCH', undefined],
    ['another identity', { spiffe_id: 'spiffe://example.org/ns/shop/sa/ledger' }, 'TRELLIS_CP_IDENTITY_MISMATCH', undefined],
    ['a port out of range', { inbound_ports: [70000] }, 'TRELLIS_CP_BAD_REQUEST', undefined],
  ];
  for (const [what, node, code, reason] of refusals) {
    it(`Should refuse ${what} with ${code}${reason ? ` (reason ${reason})` : ''}`, () => {
      const v = judgeNode({ spiffe_id: ID, ...node }, attested, '10.0.0.5');
      expect(v.ok).to.equal(false);
      expect(v).to.include({ code });
      if (!v.ok) expect(v.reason).to.equal(reason);
    });
  }

  it('Should use the attested service and labels, the announced attested ports and the address the stream comes from', () => {
    const v = judgeNode({ spiffe_id: ID, namespace: 'shop', service: '', labels: {}, inbound_ports: [8443, 8443], address: '' }, attested, '::ffff:10.0.0.5');
    expect(v).to.deep.equal({
      ok: true,
      node: { spiffeId: ID, namespace: 'shop', labels: { app: 'payments', tier: 'backend' }, service: 'payments', inboundPorts: [8443], address: '10.0.0.5' },
      ignored: [],
    });
  });

  it('Should accept a node that repeats exactly what was attested, with its own address', () => {
    const v = judgeNode({ spiffe_id: ID, namespace: 'shop', service: 'payments', labels: { tier: 'backend', app: 'payments' }, inbound_ports: [8080, 8443], address: '10.0.0.5' }, attested, '10.0.0.5');
    expect(v.ok).to.equal(true);
  });

  it('Should refuse any service, label or port from an identity-only attestation (a Kubernetes token without the API-server registry)', () => {
    const k8s = identityOnly(ID);
    for (const node of [{ service: 'payments' }, { labels: { app: 'payments' } }, { inbound_ports: [8080] }]) {
      expect(judgeNode({ spiffe_id: ID, ...node }, k8s, '10.0.0.5')).to.include({ ok: false, code: 'TRELLIS_CP_ATTESTATION_MISMATCH' });
    }
    expect(judgeNode({ spiffe_id: ID, namespace: 'shop' }, k8s, '10.0.0.5')).to.deep.include({ ok: true });
  });

  it('Should refuse a namespace from an identity that names none', () => {
    const vm = fromJoinToken('spiffe://example.org/vm/batch', { service: '', labels: {}, inboundPorts: [] });
    expect(judgeNode({ namespace: 'finance' }, vm, '10.0.0.5')).to.include({ ok: false, code: 'TRELLIS_CP_ATTESTATION_MISMATCH', reason: 'namespace' });
  });

  it('Should refuse an oversized node before comparing anything', () => {
    const labels = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, 'v']));
    expect(judgeNode({ spiffe_id: 'spiffe://example.org/ns/other/sa/x', labels }, attested, '10.0.0.5')).to.include({ ok: false, code: 'TRELLIS_CP_NODE_TOO_LARGE' });
  });
});

describe('node claims of a sidecar attested by its Kubernetes pod (pure)', () => {
  const byPod = fromKubernetesPod(ID, { namespace: 'shop', name: 'payments-1', uid: 'u1' });
  const facts: PodFacts = Object.freeze({
    namespace: 'shop', name: 'payments-1', uid: 'u1', serviceAccount: 'payments', ips: ['10.0.0.5'], labels: { app: 'payments', tier: 'backend' }, inboundPorts: [15100], services: ['payments'],
  });
  const judge = (node: Record<string, unknown>, pod: PodFacts = facts): NodeVerdict => judgeNode({ spiffe_id: ID, namespace: 'shop', ...node }, byPod, '127.0.0.1', pod);

  it('Should serve the pod\'s labels and IP from the API server and publish nothing of its own, whatever the stream\'s peer address', () => {
    expect(judge({ service: 'payments', labels: { tier: 'backend', app: 'payments' }, inbound_ports: [15100], address: '10.0.0.5' })).to.deep.equal({
      ok: true,
      node: { spiffeId: ID, namespace: 'shop', labels: { app: 'payments', tier: 'backend' }, service: '', inboundPorts: [], address: '10.0.0.5' },
      ignored: [],
    });
    expect(judge({ service: 'payments.shop' })).to.deep.include({ ignored: [] });
  });

  it('Should ignore, and report, a service the pod is not behind, labels it does not carry and ports it has no listener for', () => {
    const v = judge({ service: 'ledger', labels: { app: 'payments', admin: 'true' }, inbound_ports: [15100, 9999] });
    expect(v.ok).to.equal(true);
    if (!v.ok) return;
    expect(v.ignored).to.deep.equal(['service', 'labels', 'ports']);
    expect(v.node.labels, 'policies select on the pod\'s labels').to.deep.equal({ app: 'payments', tier: 'backend' });
    expect(v.node.service).to.equal('');
  });

  const refused: Array<[string, Record<string, unknown>, PodFacts, string, string | undefined]> = [
    ['an address that is not the pod\'s IP', { address: '10.0.0.99' }, facts, 'TRELLIS_CP_ATTESTATION_MISMATCH', 'address'],
    ['another namespace', { namespace: 'finance' }, facts, 'TRELLIS_CP_IDENTITY_MISMATCH', undefined],
    ['a pod that runs as another ServiceAccount than the identity', {}, { ...facts, serviceAccount: 'ledger' }, 'TRELLIS_CP_IDENTITY_MISMATCH', undefined],
  ];
  for (const [what, node, pod, code, reason] of refused) {
    it(`Should refuse ${what} with ${code}`, () => {
      const v = judge(node, pod);
      expect(v).to.include({ ok: false, code });
      if (!v.ok) expect(v.reason).to.equal(reason);
    });
  }

  it('Should count as the identity alone without the pod\'s facts (fail closed)', () => {
    expect(judgeNode({ spiffe_id: ID, labels: { app: 'payments' } }, byPod, '10.0.0.5', null)).to.include({ ok: false, code: 'TRELLIS_CP_ATTESTATION_MISMATCH' });
  });
});

describe('workload metadata bounds', () => {
  it('Should report every problem with its field', () => {
    const problems = workloadMetadataProblems({ service: 'Payments!', labels: { 'bad key!': 'v', ok: 'x'.repeat(64), 'a/b/c': 'v' }, inboundPorts: [0, 8080, 8080] });
    expect(problems.map((p) => p.split(':')[0])).to.deep.equal(['service', 'labels.bad key!', 'labels.ok', 'labels.a/b/c', 'inboundPorts', 'inboundPorts']);
  });

  it('Should accept Kubernetes-shaped labels at the limits', () => {
    const labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`${'p'.repeat(253)}/${'n'.repeat(60)}${String(i).padStart(3, '0')}`, 'v'.repeat(63)]));
    expect(workloadMetadataProblems({ service: 'payments.shop', labels, inboundPorts: [1, 65535] })).to.deep.equal([]);
  });
});

describe('join token workload claims', () => {
  const key = Buffer.alloc(32, 7);
  it('Should carry service, labels and ports through signing and verification', async () => {
    const { token } = await createJoinToken(key, { spiffeId: ID, ttlSeconds: 60, uses: 1, nowMs: Date.now(), workload: { service: 'payments', labels: { app: 'payments' }, inboundPorts: [8443, 8080] } });
    const claims = await verifyJoinToken(key, token, Date.now(), 'example.org');
    expect(claims.workload).to.deep.equal({ service: 'payments', labels: { app: 'payments' }, inboundPorts: [8080, 8443] });
  });

  it('Should refuse to mint ports without a service, or labels out of bounds', async () => {
    for (const workload of [{ inboundPorts: [8080] }, { labels: { app: 'x'.repeat(64) } }]) {
      await createJoinToken(key, { spiffeId: ID, ttlSeconds: 60, uses: 1, nowMs: Date.now(), workload }).then(
        () => expect.fail('minted'),
        (e: { code: string }) => expect(e.code).to.equal('TRELLIS_CP_BAD_REQUEST'),
      );
    }
  });
});

describe('FileAttestationStore', () => {
  it('Should recall what an SVID was issued under from a new store (a restart, another replica), only for its own identity and until it expires', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const now = Date.parse('2025-06-01T00:00:00Z');
      new FileAttestationStore(dir).remember('00AB:CD', attested, now + 3600_000, now);
      const file = join(dir, 'attestations', 'abcd.json');
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      expect(statSync(join(dir, 'attestations')).mode & 0o777).to.equal(0o700);
      const restarted = new FileAttestationStore(dir);
      expect(restarted.recall('abcd', ID, now)).to.deep.equal(attested);
      expect(restarted.recall('abcd', 'spiffe://example.org/ns/shop/sa/rogue', now)).to.equal(null);
      expect(restarted.recall('abcd', ID, now + 3600_000)).to.equal(null);
      expect(restarted.recall('../../etc/passwd', ID, now)).to.equal(null);
    } finally {
      cleanup();
    }
  });

  it('Should treat a record that does not parse as absent (identity only)', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const now = Date.now();
      const store = new FileAttestationStore(dir);
      store.remember('ab', attested, now + 60_000, now);
      writeFileSync(join(dir, 'attestations', 'cd.json'), '{"spiffeId": 1}');
      expect(new FileAttestationStore(dir).recall('cd', ID, now)).to.equal(null);
    } finally {
      cleanup();
    }
  });

  it('Should carry the pod a Kubernetes token was bound to forward to the SVIDs issued under it', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const now = Date.now();
      const byPod = fromKubernetesPod(ID, { namespace: 'shop', name: 'payments-1', uid: '7d3c-uid' });
      new FileAttestationStore(dir).remember('ef', byPod, now + 60_000, now);
      expect(new FileAttestationStore(dir).recall('ef', ID, now)).to.deep.equal(byPod);
      writeFileSync(join(dir, 'attestations', 'ee.json'), JSON.stringify({ spiffeId: ID, source: 'kubernetes-pod', pod: { namespace: 'shop', name: '../x', uid: 'u' }, notAfter: new Date(now + 60_000).toISOString() }));
      expect(new FileAttestationStore(dir).recall('ee', ID, now), 'a record with a bad pod name attests nothing').to.equal(null);
    } finally {
      cleanup();
    }
  });

  it('Should not write a record for an identity-only attestation', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      new FileAttestationStore(dir).remember('ab', identityOnly(ID), Date.now() + 60_000, Date.now());
      expect(() => statSync(join(dir, 'attestations', 'ab.json'))).to.throw();
    } finally {
      cleanup();
    }
  });
});
