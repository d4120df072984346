import { expect } from 'chai';
import { parsePolicyFile, silentLogger, type Policy } from '@trellis/shared';
import { PolicySetPublisher } from '../../src/policy';

const WORDING = { updated: 'updated', duplicate: 'duplicate', allValid: 'all valid', servedAnyway: 'served anyway' };

function policies(yaml: string): Policy[] {
  const r = parsePolicyFile(yaml, 'p.yaml', { firstSeen: new Date('2025-01-01T00:00:00Z') });
  expect(r.issues.filter((i) => i.severity === 'error')).to.deep.equal([]);
  return r.policies;
}

const allow = (name: string, ns = 'shop', comment = ''): string => `${comment}apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: {action: ALLOW, rules: [{}]}\n`;

describe('The set a policy store publishes (one model for the policy dir and the API server)', () => {
  it('Should publish a new version only when the meaning changes, never for a new origin or a comment', () => {
    const p = new PolicySetPublisher({ logger: silentLogger }, WORDING);
    const empty = p.version();
    expect(p.publish(policies(allow('a')).map((policy) => ({ origin: 'one.yaml', policy })))).to.equal(true);
    const v1 = p.version();
    expect(v1).to.not.equal(empty);
    expect(p.publish(policies(allow('a', 'shop', '# a comment\n')).map((policy) => ({ origin: 'two.yaml', policy })))).to.equal(false);
    expect(p.version()).to.equal(v1);
    expect(p.current().authorizationPolicies.map((x) => x.metadata.name)).to.deep.equal(['a']);
  });

  it('Should keep the first definition of a kind/namespace/name and report the later one', () => {
    const p = new PolicySetPublisher({ logger: silentLogger }, WORDING);
    const [first] = policies(allow('a'));
    const [second] = policies(allow('a').replace('rules: [{}]', 'rules: [{to: [{operation: {methods: [GET]}}]}]'));
    p.publish([{ origin: 'a.yaml', policy: first! }, { origin: 'b.yaml', policy: second! }]);
    expect(p.current().authorizationPolicies[0]!.rules).to.deep.equal([{}]);
    expect(p.duplicates()).to.have.length(1);
    expect(p.duplicates()[0]).to.contain('b.yaml is ignored').and.contain('TRELLIS_POLICY_DUPLICATE');
  });

  it('Should stay unservable until a complete load validated, then stay servable (fail closed at first load)', () => {
    const p = new PolicySetPublisher({ logger: silentLogger }, WORDING);
    expect(p.servable()).to.equal(false);
    expect(p.markComplete(false, { rejected: ['bad.yaml'] })).to.equal(false);
    expect(p.servable()).to.equal(false);
    expect(p.markComplete(true, { rejected: [] })).to.equal(true);
    expect(p.markComplete(true, { rejected: [] }), 'only the first complete load makes it servable').to.equal(false);
    expect(p.servable()).to.equal(true);
  });
});
