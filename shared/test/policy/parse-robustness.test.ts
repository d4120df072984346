import { expect } from 'chai';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parsePolicyFile } from '../../src';
import { FIRST_SEEN } from './policy-fixtures';

/** Bad input must come back as issues, never as an exception that could take a control plane down. */
describe('parsePolicyFile (robustness)', () => {
  const check = (text: string): void => {
    const r = parsePolicyFile(text, 'fuzz.yaml', { firstSeen: FIRST_SEEN });
    for (const i of r.issues) {
      expect(i.line).to.be.at.least(1);
      expect(i.column).to.be.at.least(1);
      expect(i.code).to.match(/^TRELLIS_POLICY_/);
    }
    for (const p of r.policies) expect(Object.isFrozen(p)).to.equal(true);
  };

  it('never throws on arbitrary text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (t) => check(t)), { numRuns: 300 });
  });

  it('never throws on arbitrary YAML values in a policy shape', () => {
    const anyValue = fc.jsonValue({ maxDepth: 4 });
    const doc = fc.record({
      apiVersion: fc.oneof(fc.constant('security.istio.io/v1'), anyValue),
      kind: fc.oneof(fc.constantFrom('PeerAuthentication', 'AuthorizationPolicy', 'List'), anyValue),
      metadata: fc.oneof(fc.record({ name: fc.oneof(fc.constant('p'), anyValue), namespace: fc.oneof(fc.constant('foo'), anyValue) }), anyValue),
      spec: fc.oneof(
        fc.record({
          selector: anyValue,
          mtls: fc.oneof(fc.record({ mode: anyValue }), anyValue),
          portLevelMtls: anyValue,
          action: fc.oneof(fc.constantFrom('ALLOW', 'DENY', 'AUDIT', 'CUSTOM'), anyValue),
          rules: fc.oneof(fc.array(fc.record({ from: anyValue, to: anyValue, when: anyValue }, { requiredKeys: [] }), { maxLength: 3 }), anyValue),
        }, { requiredKeys: [] }),
        anyValue,
      ),
      items: anyValue,
    }, { requiredKeys: [] });
    fc.assert(fc.property(fc.array(doc, { minLength: 1, maxLength: 3 }), (docs) => check(docs.map((d) => stringify(d)).join('---\n'))), { numRuns: 300 });
  });
});
