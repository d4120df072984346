import { expect } from 'chai';
import { createLogger, formatIssue, parsePolicyObject, POLICY_CODES, type PolicySet } from '@trellis/shared';
import { PolicyObjectStore, type PolicyObject, type PolicyObjectStoreOptions } from '../../src/policy';

const NOW = new Date('2025-06-01T12:00:00Z');

/** An AuthorizationPolicy object as the API server sends it (bookkeeping metadata and status included). */
function ap(name: string, opts: { group?: string; generation?: number; action?: string; rules?: unknown; status?: unknown; labels?: Record<string, string> } = {}): PolicyObject {
  return {
    apiVersion: `${opts.group ?? 'security.trellis.dev'}/v1`,
    kind: 'AuthorizationPolicy',
    metadata: {
      name,
      namespace: 'shop',
      generation: opts.generation ?? 1,
      uid: `uid-${name}`,
      resourceVersion: String(Math.random()),
      creationTimestamp: '2025-05-01T00:00:00Z',
      managedFields: [{ manager: 'kubectl' }],
      ...(opts.labels ? { labels: opts.labels } : {}),
    },
    spec: { action: opts.action ?? 'ALLOW', ...(opts.rules === undefined ? { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] } : opts.rules === null ? {} : { rules: opts.rules }) },
    ...(opts.status ? { status: opts.status } : {}),
  };
}

/** The same object, broken where only the validator (not the CRD schema) sees it: DENY without rules. */
const broken = (name: string, generation: number, group?: string): PolicyObject => ap(name, { generation, action: 'DENY', rules: null, group });

function harness(opts: PolicyObjectStoreOptions = {}): { store: PolicyObjectStore; changes: PolicySet[]; logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({ component: 'policy-crds', level: 'debug', sink: { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) }, now: () => NOW });
  const store = new PolicyObjectStore(opts, { logger, now: () => NOW });
  const changes: PolicySet[] = [];
  store.subscribe((s) => changes.push(s));
  return { store, changes, logs };
}

const names = (set: PolicySet): string[] => [...set.peerAuthentications, ...set.authorizationPolicies].map((p) => p.metadata.name).sort();
const ref = (name: string, group = 'security.trellis.dev') => ({ group, kind: 'AuthorizationPolicy', namespace: 'shop', name });

describe('PolicyObjectStore (API-server policies, per-object last good)', () => {
  it('Should serve nothing until every collection was listed, then every valid object at once', () => {
    const { store, changes } = harness();
    store.apply(ap('a'));
    store.apply(ap('b'));
    expect(store.servable(), 'not before the first full list').to.equal(false);
    expect(changes).to.have.length(0);
    store.markSynced();
    expect(store.servable()).to.equal(true);
    expect(names(store.current())).to.deep.equal(['a', 'b']);
    expect(changes, 'one change for the whole first list').to.have.length(1);
  });

  it('Should fail closed at start while an object is invalid, and become servable once it is fixed or deleted', () => {
    for (const fix of ['edit', 'delete'] as const) {
      const { store, changes } = harness();
      store.apply(ap('good'));
      store.apply(broken('bad', 1));
      store.markSynced();
      expect(store.servable(), 'an invalid object at first load: nothing is served').to.equal(false);
      if (fix === 'edit') store.apply(ap('bad', { generation: 2 }));
      else store.remove(ref('bad'));
      expect(store.servable(), fix).to.equal(true);
      expect(names(store.current())).to.deep.equal(fix === 'edit' ? ['bad', 'good'] : ['good']);
      expect(changes.length, 'listeners hear that it became servable').to.be.at.least(1);
    }
  });

  it('Should serve the valid objects at once with allowInvalidAtStart, and warn what that risks', () => {
    const { store, logs } = harness({ allowInvalidAtStart: true });
    store.apply(ap('good'));
    store.apply(broken('bad', 1));
    store.markSynced();
    expect(store.servable()).to.equal(true);
    expect(names(store.current())).to.deep.equal(['good']);
    expect(logs.some((l) => l['level'] === 'warn' && String(l['msg']).includes('allowed everything'))).to.equal(true);
  });

  it('Should keep the last valid version of an object whose edit is invalid, say which, and not publish a change', () => {
    const { store, changes } = harness();
    store.apply(ap('a', { generation: 1 }));
    store.markSynced();
    const before = store.current();
    const r = store.apply(broken('a', 2));
    expect(r!.verdict).to.deep.include({ state: 'rejected', generation: 2, inForceGeneration: 1 });
    expect(r!.verdict.errors.map((e) => e.code)).to.deep.equal([POLICY_CODES.MISSING_FIELD]);
    expect(store.current(), 'the set in force is the same object').to.equal(before);
    expect(store.current().authorizationPolicies[0]!.action).to.equal('ALLOW');
    expect(changes).to.have.length(1);
    // Broken twice in a row: the last valid version is still generation 1.
    expect(store.apply(ap('a', { generation: 3, action: 'DENY', rules: [] }))!.verdict.inForceGeneration).to.equal(1);
    expect(store.apply(ap('a', { generation: 4, action: 'DENY', rules: [{}] }))!.verdict).to.deep.include({ state: 'valid', inForceGeneration: 4 });
    expect(store.current().authorizationPolicies[0]!.action).to.equal('DENY');
  });

  it('Should put nothing in force for an object invalid from its first version', () => {
    const { store } = harness();
    store.markSynced();
    const r = store.apply(broken('new', 1));
    expect(r!.verdict).to.deep.include({ state: 'rejected', inForceGeneration: null });
    expect(names(store.current())).to.deep.equal([]);
    expect(store.servable(), 'later rejections never make the store unservable').to.equal(true);
  });

  it('Should report exactly what trellis validate and the webhook report, the object standing in for the file', () => {
    const { store } = harness();
    const obj = broken('x', 1);
    const r = store.apply(obj)!;
    const same = parsePolicyObject(obj, 'AuthorizationPolicy shop/x', { firstSeen: NOW }).issues.filter((i) => i.severity === 'error');
    expect(r.verdict.errors.map(formatIssue)).to.deep.equal(same.map(formatIssue));
    expect(formatIssue(r.verdict.errors[0]!)).to.match(/^AuthorizationPolicy shop\/x: spec\.rules: .* \[TRELLIS_POLICY_MISSING_FIELD\]$/);
  });

  it('Should withdraw a deleted object\'s policy', () => {
    const { store, changes } = harness();
    store.apply(ap('a'));
    store.apply(ap('b'));
    store.markSynced();
    expect(store.remove(ref('a'))).to.equal(true);
    expect(names(store.current())).to.deep.equal(['b']);
    expect(changes).to.have.length(2);
    expect(store.remove(ref('a')), 'already gone').to.equal(false);
  });

  it('Should not judge again, nor publish, when only status or bookkeeping changed', () => {
    const { store, changes, logs } = harness();
    store.markSynced();
    store.apply(broken('a', 1));
    const errorsLogged = logs.filter((l) => l['level'] === 'error').length;
    store.apply({ ...broken('a', 1), status: { conditions: [{ type: 'Accepted', status: 'False' }] } });
    expect(logs.filter((l) => l['level'] === 'error').length, 'the status write that follows a verdict does not loop').to.equal(errorsLogged);
    store.apply(ap('b'));
    const n = changes.length;
    store.apply(ap('b', { status: { conditions: [] } }));
    expect(changes.length).to.equal(n);
    store.apply(ap('b', { labels: { team: 'x' } }));
    expect(changes.length, 'a label edit is judged again but changes nothing in force').to.equal(n);
  });

  it('Should keep a policy defined in both API groups from security.trellis.dev, and report the other', () => {
    const { store } = harness();
    store.apply(ap('same', { group: 'security.istio.io', action: 'DENY', rules: [{}] }));
    store.apply(ap('same'));
    store.markSynced();
    expect(store.current().authorizationPolicies.map((p) => p.action)).to.deep.equal(['ALLOW']);
    expect(store.status().duplicates).to.deep.equal([
      'AuthorizationPolicy shop/same is defined in AuthorizationPolicy shop/same (security.trellis.dev/v1) and AuthorizationPolicy shop/same (security.istio.io/v1); AuthorizationPolicy shop/same (security.istio.io/v1) is ignored [TRELLIS_POLICY_DUPLICATE]',
    ]);
  });

  it('Should withdraw every object of a collection that is no longer served', () => {
    const { store } = harness();
    store.apply(ap('t'));
    store.apply(ap('i', { group: 'security.istio.io' }));
    store.markSynced();
    expect(store.forgetCollection('security.istio.io', 'AuthorizationPolicy')).to.equal(1);
    expect(names(store.current())).to.deep.equal(['t']);
  });

  it('Should show rejected objects with their errors and what is in force in status()', () => {
    const { store } = harness();
    store.apply(ap('a'));
    store.markSynced();
    store.apply(broken('a', 2));
    const st = store.status();
    expect(st).to.deep.include({ synced: true, servable: true });
    expect(st.counts).to.deep.equal({ objects: 1, rejected: 1, peerAuthentications: 0, authorizationPolicies: 1 });
    expect(st.objects).to.have.length(1);
    expect(st.objects[0]).to.deep.include({ object: 'AuthorizationPolicy shop/a', apiVersion: 'security.trellis.dev/v1', state: 'rejected', generation: 2, inForceGeneration: 1, rejectedAt: NOW.toISOString() });
  });
});
