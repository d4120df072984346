import { expect } from 'chai';
import { buildPolicySet, createLogger, parsePolicyFile, type PolicySet } from '@trellis/shared';
import { policySetSource, type PolicySetProvider } from '../../src/discovery/policy-set-source';

const NOW = new Date('2025-06-01T12:00:00Z');

/** A provider under the test's control. */
class ManualProvider implements PolicySetProvider {
  private listeners = new Set<() => void>();
  closed = false;
  constructor(public set: PolicySet, public ready: boolean, private readonly label: string) {}
  servable(): boolean {
    return this.ready;
  }
  current(): PolicySet {
    return this.set;
  }
  subscribe(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  status(): unknown {
    return { label: this.label };
  }
  close(): void {
    this.closed = true;
  }
  publish(set: PolicySet, ready = this.ready): void {
    this.set = set;
    this.ready = ready;
    for (const l of this.listeners) l();
  }
}

function setOf(yaml: string, file: string): PolicySet {
  const r = parsePolicyFile(yaml, file, { firstSeen: NOW });
  expect(r.issues.filter((i) => i.severity === 'error')).to.deep.equal([]);
  return buildPolicySet(r.policies);
}

const allow = (name: string, ns: string): string => `apiVersion: security.trellis.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  action: ALLOW\n  rules: [{}]\n`;
const deny = (name: string, ns: string): string => `apiVersion: security.trellis.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  action: DENY\n  rules: [{}]\n`;
const opts = { rootNamespace: 'trellis-system', defaultMode: 'STRICT' as const };
const served = (src: ReturnType<typeof policySetSource>, ns: string): string[] =>
  (src.current()!.authorizationPolicies({ namespace: ns, labels: {} }).policies as Array<{ name: string; action: string }>).map((p) => `${p.name}:${p.action}`).sort();

describe('policySetSource (the policy dir and the API server, one readiness rule)', () => {
  it('Should serve nothing until every source is servable, then both together', () => {
    const dir = new ManualProvider(setOf(allow('from-file', 'shop'), 'a.yaml'), true, 'dir');
    const crds = new ManualProvider(buildPolicySet([]), false, 'crds');
    const src = policySetSource([{ name: 'dir', provider: dir }, { name: 'kubernetes', provider: crds }], opts);
    expect(src.current(), 'the API server is not read yet: fail closed').to.equal(null);
    let heard = 0;
    src.subscribe(() => heard++);
    crds.publish(setOf(allow('from-crd', 'shop'), 'AuthorizationPolicy shop/from-crd'), true);
    expect(heard).to.equal(1);
    expect(served(src, 'shop')).to.deep.equal(['from-crd:ALLOW', 'from-file:ALLOW']);
    expect(src.status()).to.deep.include({ servable: true, sources: { dir: { label: 'dir' }, kubernetes: { label: 'crds' } } });
  });

  it('Should keep a policy defined in the dir and on the API server from the dir, and report it', () => {
    const logs: string[] = [];
    const dir = new ManualProvider(setOf(allow('same', 'shop'), '/p/a.yaml'), true, 'dir');
    const crds = new ManualProvider(setOf(deny('same', 'shop'), 'AuthorizationPolicy shop/same'), true, 'crds');
    const src = policySetSource([{ name: 'dir', provider: dir }, { name: 'kubernetes', provider: crds }], opts, { logger: createLogger({ component: 't', sink: { write: (l: string) => logs.push(l) } }) });
    expect(served(src, 'shop')).to.deep.equal(['same:ALLOW']);
    expect((src.status() as { duplicates: string[] }).duplicates).to.deep.equal([
      'AuthorizationPolicy shop/same is defined in dir /p/a.yaml and kubernetes AuthorizationPolicy shop/same; kubernetes AuthorizationPolicy shop/same is ignored [TRELLIS_POLICY_DUPLICATE]',
    ]);
    expect(logs.some((l) => l.includes('TRELLIS_POLICY_DUPLICATE'))).to.equal(true);
  });

  it('Should build one view per content, and a new one when a source changes', () => {
    const dir = new ManualProvider(setOf(allow('a', 'shop'), 'a.yaml'), true, 'dir');
    const crds = new ManualProvider(buildPolicySet([]), true, 'crds');
    const src = policySetSource([{ name: 'dir', provider: dir }, { name: 'kubernetes', provider: crds }], opts);
    const v1 = src.current();
    expect(src.current()).to.equal(v1);
    crds.publish(setOf(allow('b', 'shop'), 'b'));
    expect(src.current()).to.not.equal(v1);
    expect(served(src, 'shop')).to.deep.equal(['a:ALLOW', 'b:ALLOW']);
  });

  it('Should pass a single source\'s status through unchanged, and close every source', () => {
    const dir = new ManualProvider(buildPolicySet([]), true, 'dir');
    const src = policySetSource([{ name: 'dir', provider: dir }], opts);
    expect(src.status()).to.deep.equal({ label: 'dir' });
    src.close();
    expect(dir.closed).to.equal(true);
  });
});
