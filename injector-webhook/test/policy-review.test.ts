import { expect } from 'chai';
import { reviewPolicyAdmission } from '../src/webhook/policy-review';

const NOW = new Date('2026-01-02T03:04:05Z');
const review = (object: unknown, extra: Record<string, unknown> = {}): unknown => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u1', kind: { group: 'security.trellis.dev', version: 'v1', kind: 'PeerAuthentication' }, operation: 'CREATE', namespace: 'shop', name: 'p', object, ...extra },
});
// As the API server sends it: server-managed metadata included.
const stored = (spec: unknown): unknown => ({
  apiVersion: 'security.trellis.dev/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'p', namespace: 'shop', uid: 'x', resourceVersion: '7', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', managedFields: [{ manager: 'kubectl' }], annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } },
  spec,
});

describe('policy validating webhook (pure)', () => {
  it('Should allow a valid policy as the API server sends it (server-managed metadata is not policy content)', () => {
    const r = reviewPolicyAdmission(review(stored({ selector: { matchLabels: { app: 'web' } }, portLevelMtls: { '8080': { mode: 'STRICT' } } })), { now: NOW });
    expect(r.review.response).to.deep.equal({ uid: 'u1', allowed: true });
    expect(r.outcome).to.equal('validated');
  });

  it('Should refuse a port key out of range and portLevelMtls without selector, naming the object, field, reason and code', () => {
    const r = reviewPolicyAdmission(review(stored({ portLevelMtls: { '99999': { mode: 'STRICT' } } })), { now: NOW });
    expect(r.review.response.allowed).to.equal(false);
    expect(r.review.response.status?.code).to.equal(422);
    const msg = r.review.response.status!.message;
    expect(msg).to.include('PeerAuthentication shop/p: spec.portLevelMtls["99999"]: port must be between 1-65535, got 99999 [TRELLIS_POLICY_INVALID_VALUE]');
    expect(msg).to.include('PeerAuthentication shop/p: spec.portLevelMtls: portLevelMtls requires selector');
  });

  it('Should pass warnings on as admission warnings', () => {
    const obj = stored({ selector: { matchLabels: { app: 'web' } } }) as { metadata: { namespace: string } };
    obj.metadata.namespace = 'trellis-system';
    const r = reviewPolicyAdmission(review(obj, { namespace: 'trellis-system' }), { now: NOW });
    expect(r.review.response.allowed).to.equal(true);
    expect(r.review.response.warnings?.[0]).to.match(/root namespace "trellis-system" is ignored/);
  });

  it('Should leave deletes and other kinds alone', () => {
    expect(reviewPolicyAdmission(review(null, { operation: 'DELETE' }), { now: NOW }).review.response.allowed).to.equal(true);
    expect(reviewPolicyAdmission(review({}, { kind: { group: '', version: 'v1', kind: 'Pod' } }), { now: NOW }).outcome).to.equal('ignored');
  });
});
