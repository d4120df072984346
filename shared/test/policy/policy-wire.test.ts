import { expect } from 'chai';
import { authorize, buildPolicySet, hasErrorCode, policiesFromJSON, policiesToJSON, POLICY_CODES, PolicyError, policySetFingerprint, resolvePeerAuthentication } from '../../src';
import { policies } from './policy-fixtures';

const YAML = `apiVersion: security.trellis.dev/v1
kind: PeerAuthentication
metadata: {name: w, namespace: foo}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"8080": {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: foo, annotations: {"istio.io/dry-run": "true"}}
spec:
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bar/*"], ipBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {ports: ["8080"], methods: [GET], notPaths: ["/healthz"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: b, namespace: foo, creationTimestamp: "2020-01-01T00:00:00Z"}
spec: {}
`;

describe('policy wire format', () => {
  it('round-trips through JSON text with the same meaning', () => {
    const original = policies(YAML);
    const wire = JSON.parse(JSON.stringify(policiesToJSON(original))) as unknown;
    const back = policiesFromJSON(wire);
    expect(policySetFingerprint(buildPolicySet(back))).to.equal(policySetFingerprint(buildPolicySet(original)));
    const w = { namespace: 'foo', labels: { app: 'web' } };
    const req = { principal: 'spiffe://cluster.local/ns/bar/sa/x', sourceIp: '10.0.0.1', port: 8080, http: { method: 'GET', path: '/' } };
    expect(authorize(back, w, req)).to.deep.equal(authorize(original, w, req));
    const opts = { rootNamespace: 'trellis-system', defaultMode: 'STRICT' as const };
    expect(resolvePeerAuthentication(buildPolicySet(back), w, opts)).to.deep.equal(resolvePeerAuthentication(buildPolicySet(original), w, opts));
  });

  it('keeps the creation time so conflict order survives the trip', () => {
    const back = policiesFromJSON(policiesToJSON(policies(YAML)));
    expect(back.map((p) => p.metadata.creationTimestamp)).to.deep.equal(['2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z']);
  });

  const bad: Array<[string, unknown]> = [
    ['not an array', { policies: [] }],
    ['an unknown field', [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'foo', creationTimestamp: '2020-01-01T00:00:00Z' }, spec: { sneaky: true } }]],
    ['a policy without creationTimestamp', [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'foo' }, spec: {} }]],
    ['an unsupported field', [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', creationTimestamp: '2020-01-01T00:00:00Z' }, spec: { rules: [{ when: [{ key: 'source.ip', values: ['1.1.1.1'] }] }] } }]],
  ];
  for (const [what, data] of bad) {
    it(`refuses ${what} with ${POLICY_CODES.WIRE}`, () => {
      let caught: unknown;
      try {
        policiesFromJSON(data);
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(PolicyError);
      expect(hasErrorCode(caught, POLICY_CODES.WIRE)).to.equal(true);
    });
  }
});
