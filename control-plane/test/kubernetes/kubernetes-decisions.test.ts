import { expect } from 'chai';
import type { ServedResource } from '@trellis/kubernetes';
import { POLICY_CODES, type PolicyIssue } from '@trellis/shared';
import { policyCollections } from '../../src/kubernetes/policy-collections';
import { policyCondition, policyEvent, policyEventKind, statusWithCondition } from '../../src/kubernetes/policy-status';
import { publishesRootCert, rootCertChange, rootCertPem } from '../../src/kubernetes/root-cert-configmap';
import type { PolicyObjectVerdict } from '../../src/policy';

const resources = (status: boolean, kinds: Array<[string, string]> = [['PeerAuthentication', 'peerauthentications'], ['AuthorizationPolicy', 'authorizationpolicies']]): ServedResource[] =>
  kinds.flatMap(([kind, plural]) => [
    { name: plural, kind, namespaced: true, verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] },
    ...(status ? [{ name: `${plural}/status`, kind, namespaced: true, verbs: ['get', 'patch', 'update'] }] : []),
  ]);

describe('policy collections to watch (pure, from discovery)', () => {
  it('Should watch security.trellis.dev/v1 and, when Istio\'s CRDs are installed, one version of each Istio kind (v1 before v1beta1)', () => {
    const served = new Map<string, ServedResource[] | null>([
      ['security.trellis.dev/v1', resources(true)],
      ['security.istio.io/v1', resources(true)],
      ['security.istio.io/v1beta1', resources(true)],
    ]);
    expect(policyCollections(served).map((c) => `${c.apiVersion} ${c.kind} ${c.plural}${c.statusSubresource ? ' +status' : ''}`)).to.deep.equal([
      'security.trellis.dev/v1 PeerAuthentication peerauthentications +status',
      'security.trellis.dev/v1 AuthorizationPolicy authorizationpolicies +status',
      'security.istio.io/v1 PeerAuthentication peerauthentications +status',
      'security.istio.io/v1 AuthorizationPolicy authorizationpolicies +status',
    ]);
  });

  it('Should read an older Istio through v1beta1, skip a kind whose CRD is missing, and write no status where the CRD serves none', () => {
    const served = new Map<string, ServedResource[] | null>([
      ['security.trellis.dev/v1', null],
      ['security.istio.io/v1', null],
      ['security.istio.io/v1beta1', resources(false, [['AuthorizationPolicy', 'authorizationpolicies']])],
    ]);
    expect(policyCollections(served)).to.deep.equal([{ group: 'security.istio.io', apiVersion: 'security.istio.io/v1beta1', kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', statusSubresource: false }]);
  });

  it('Should keep watching the version it watches while it is still served', () => {
    const served = new Map<string, ServedResource[] | null>([['security.istio.io/v1', resources(true)], ['security.istio.io/v1beta1', resources(true)]]);
    const current = new Map([['security.istio.io/AuthorizationPolicy', 'security.istio.io/v1beta1']]);
    expect(policyCollections(served, current).map((c) => c.apiVersion)).to.deep.equal(['security.istio.io/v1', 'security.istio.io/v1beta1']);
  });
});

const issue = (message: string): PolicyIssue => ({ severity: 'error', code: POLICY_CODES.MISSING_FIELD, file: 'AuthorizationPolicy shop/web', documentIndex: -1, line: 0, column: 0, path: 'spec.rules', message });
const rejected = (inForce: number | null): PolicyObjectVerdict => ({ state: 'rejected', generation: 3, errors: [issue('a DENY policy needs at least one rule')], warnings: [], inForceGeneration: inForce });
const valid: PolicyObjectVerdict = { state: 'valid', generation: 2, errors: [], warnings: [], inForceGeneration: 2 };
const T0 = new Date('2025-06-01T12:00:00.123Z');
const T1 = new Date('2025-06-01T13:00:00Z');

describe('policy status condition and Event (pure)', () => {
  it('Should say Invalid with the webhook\'s text and what stays in force', () => {
    expect(policyCondition('security.trellis.dev', rejected(2))).to.deep.equal({
      type: 'Accepted',
      status: 'False',
      reason: 'Invalid',
      message: 'the policy is invalid: AuthorizationPolicy shop/web: spec.rules: a DENY policy needs at least one rule [TRELLIS_POLICY_MISSING_FIELD]; the last valid version (generation 2) stays in force',
      observedGeneration: 3,
    });
    expect(policyCondition('security.trellis.dev', rejected(null)).message).to.match(/; no version of it is in force$/);
    expect(policyCondition('security.istio.io', valid)).to.deep.equal({ type: 'TrellisAccepted', status: 'True', reason: 'Valid', message: 'the policy is valid', observedGeneration: 2 });
  });

  it('Should set its condition among others, move lastTransitionTime only when the status turns, and report no change when there is none', () => {
    const istiod = { type: 'Reconciled', status: 'True', reason: 'x', message: 'y', lastTransitionTime: '2020-01-01T00:00:00Z' };
    const a = statusWithCondition({ conditions: [istiod], validationMessages: [] }, policyCondition('security.istio.io', rejected(2)), T0);
    expect(a.changed).to.equal(true);
    expect(a.status['validationMessages'], 'other status fields are kept').to.deep.equal([]);
    const conds = a.status['conditions'] as Array<Record<string, unknown>>;
    expect(conds[0]).to.deep.equal(istiod);
    expect(conds[1]).to.deep.include({ type: 'TrellisAccepted', status: 'False', lastTransitionTime: '2025-06-01T12:00:00Z' });
    expect(statusWithCondition(a.status, policyCondition('security.istio.io', rejected(2)), T1).changed).to.equal(false);
    const b = statusWithCondition(a.status, policyCondition('security.istio.io', { ...rejected(2), generation: 4 }), T1);
    expect((b.status['conditions'] as Array<Record<string, unknown>>)[1]!['lastTransitionTime'], 'still False').to.equal('2025-06-01T12:00:00Z');
    const c = statusWithCondition(b.status, policyCondition('security.istio.io', valid), T1);
    expect((c.status['conditions'] as Array<Record<string, unknown>>)[1]!['lastTransitionTime']).to.equal('2025-06-01T13:00:00Z');
    expect(c.previous).to.deep.include({ status: 'False' });
  });

  it('Should raise a Warning for each new rejection, a Normal when valid again, and nothing for a first valid version', () => {
    const f = policyCondition('security.trellis.dev', rejected(2));
    expect(policyEventKind(undefined, f)).to.deep.equal({ type: 'Warning', reason: 'PolicyInvalid' });
    expect(policyEventKind(f, f)).to.equal(null);
    expect(policyEventKind(f, { status: 'False', message: 'other' })).to.deep.equal({ type: 'Warning', reason: 'PolicyInvalid' });
    expect(policyEventKind(f, { status: 'True', message: 'ok' })).to.deep.equal({ type: 'Normal', reason: 'PolicyValid' });
    expect(policyEventKind(undefined, { status: 'True', message: 'ok' })).to.equal(null);
    const ev = policyEvent({ apiVersion: 'security.trellis.dev/v1', kind: 'AuthorizationPolicy', name: 'web', namespace: 'shop', uid: 'u' }, { type: 'Warning', reason: 'PolicyInvalid' }, 'x'.repeat(5000), T0, 'abc');
    expect(ev).to.deep.include({ apiVersion: 'v1', kind: 'Event', type: 'Warning', reason: 'PolicyInvalid', count: 1, firstTimestamp: '2025-06-01T12:00:00Z' });
    expect((ev['message'] as string).length).to.equal(1024);
    expect(ev['metadata']).to.deep.equal({ name: 'web.abc', namespace: 'shop' });
  });
});

describe('trust-bundle ConfigMap (pure)', () => {
  const A = '-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----';
  const B = '-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n';
  it('Should go to every namespace but Kubernetes\' own and those being deleted', () => {
    const ns = (name: string, extra: Record<string, unknown> = {}) => ({ metadata: { name }, ...extra });
    expect(['default', 'shop', 'trellis-system', 'kube-system', 'kube-public', 'kube-node-lease'].filter((n) => publishesRootCert(ns(n)))).to.deep.equal(['default', 'shop', 'trellis-system']);
    expect(publishesRootCert(ns('gone', { status: { phase: 'Terminating' } }))).to.equal(false);
    expect(publishesRootCert({ metadata: { name: 'gone', deletionTimestamp: '2025-01-01T00:00:00Z' } })).to.equal(false);
  });

  it('Should create a missing ConfigMap, put back edited data, keep others\' labels, and leave a correct one alone', () => {
    const pem = rootCertPem([A, B]);
    expect(pem).to.equal(`${A}\n${B}`);
    const created = rootCertChange('shop', undefined, pem);
    expect(created).to.deep.include({ action: 'create' });
    const cm = (created as { object: Record<string, any> }).object;
    expect(cm).to.deep.include({ apiVersion: 'v1', kind: 'ConfigMap', data: { 'root-cert.pem': pem } });
    expect(cm.metadata).to.deep.include({ name: 'trellis-ca-root-cert', namespace: 'shop' });
    const stored = { ...cm, metadata: { ...cm.metadata, resourceVersion: '7', labels: { ...cm.metadata.labels, team: 'x' } } };
    expect(rootCertChange('shop', stored, pem)).to.deep.equal({ action: 'none' });
    const edited = { ...stored, data: { 'root-cert.pem': 'tampered', extra: 'y' } };
    const put = rootCertChange('shop', edited, pem) as { action: string; object: Record<string, any> };
    expect(put.action).to.equal('update');
    expect(put.object.data).to.deep.equal({ 'root-cert.pem': pem });
    expect(put.object.metadata).to.deep.include({ resourceVersion: '7' });
    expect(put.object.metadata.labels).to.include({ team: 'x', 'app.kubernetes.io/managed-by': 'trellis-control-plane' });
    expect(rootCertChange('shop', stored, rootCertPem([B])).action, 'a rotation step').to.equal('update');
  });
});
