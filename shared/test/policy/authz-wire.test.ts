import { expect } from 'chai';
import {
  AUTHZ_WIRE_VERSION,
  authorize,
  authorizeCompiled,
  buildPolicySet,
  CompiledAuthorizationPolicy,
  decodeAuthorizationPolicies,
  encodeAuthorizationPolicies,
  POLICY_CODES,
  PolicyError,
  selectAuthorizationPolicies,
  type AuthorizationPolicy,
  type AuthzRequest,
} from '../../src';
import { policies } from './policy-fixtures';

const YAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  action: DENY
  rules:
  - from: [{source: {notPrincipals: ["cluster.local/ns/ops/*"], notIpBlocks: ["10.9.0.0/16"]}}]
    to: [{operation: {paths: ["/admin*"], notMethods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web, namespace: foo, creationTimestamp: "2024-01-02T00:00:00Z", annotations: {"istio.io/dry-run": "true"}}
spec:
  selector: {matchLabels: {app: web}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep", "*/sa/client"], ipBlocks: ["10.0.0.0/8", "fd00::/8"]}}]
    to: [{operation: {methods: ["GET", "P*"], paths: ["/api/*", "*.json"], hosts: ["Web.Foo.SVC.", "*.example.org:8080"], ports: ["8080"]}}]
  - from: [{source: {serviceAccounts: ["bar/sleep", "local"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-ns, namespace: foo, creationTimestamp: "2024-01-03T00:00:00Z"}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["ba*"], notNamespaces: [baz]}}]
    to: [{operation: {notPorts: ["9090"], notHosts: ["evil.example.org"], notPaths: ["/private/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: foo, creationTimestamp: "2024-01-04T00:00:00Z"}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing, namespace: foo, creationTimestamp: "2024-01-05T00:00:00Z"}
spec: {action: ALLOW}
`;

const web = { namespace: 'foo', labels: { app: 'web' } };
const opts = { trustDomain: 'cluster.local', trustDomainAliases: ['old.td'] };

function setFor(): AuthorizationPolicy[] {
  return selectAuthorizationPolicies(buildPolicySet(policies(YAML)), web, { rootNamespace: 'trellis-system' });
}

/** The resource body the control plane sends, through JSON text as on the stream. */
function body(list: readonly AuthorizationPolicy[]): unknown {
  return JSON.parse(JSON.stringify({ wireVersion: AUTHZ_WIRE_VERSION, policies: encodeAuthorizationPolicies(list) })) as unknown;
}

function refusal(input: unknown): PolicyError {
  try {
    decodeAuthorizationPolicies(input);
  } catch (err) {
    expect(err).to.be.instanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('the decoder accepted it');
}

/** A valid body whose first policy is edited by `edit`. */
function mutated(edit: (p: Record<string, any>) => void): unknown {
  const b = body(setFor()) as { policies: Array<Record<string, any>> };
  edit(b.policies[1]!);
  return b;
}

describe('Compiled AuthorizationPolicies on the wire', () => {
  it('Should decide every request as the validated policies do, after the trip through JSON text', () => {
    const list = setFor();
    expect(list).to.have.length(5);
    const decoded = decodeAuthorizationPolicies(body(list));
    const principals = [undefined, 'spiffe://cluster.local/ns/bar/sa/sleep', 'spiffe://old.td/ns/bar/sa/sleep', 'spiffe://x.td/ns/baz/sa/client', 'spiffe://cluster.local/ns/ops/sa/a', 'spiffe://cluster.local/ns/foo/sa/local'];
    const ips = [undefined, '10.1.2.3', '10.9.1.1', 'fd00::1', '192.168.0.1', 'not-an-ip'];
    const https = [undefined, { method: 'GET', path: '/api/x' }, { method: 'POST', path: '/admin/x?y', host: 'web.foo.svc:80' }, { method: 'PUT', path: '/a.json', host: 'a.example.org:8080' }, { method: 'DELETE', path: '/private/x', host: 'evil.example.org' }];
    let n = 0;
    for (const principal of principals) {
      for (const sourceIp of ips) {
        for (const http of https) {
          for (const port of [8080, 9090]) {
            const req: AuthzRequest = { port, ...(principal ? { principal } : {}), ...(sourceIp ? { sourceIp } : {}), ...(http ? { http } : {}) };
            expect(authorizeCompiled(decoded, req, opts), JSON.stringify(req)).to.deep.equal(authorize(list, web, req, opts));
            n++;
          }
        }
      }
    }
    expect(n).to.equal(360);
  });

  it('Should send each pattern with its kind, a bare service account with its namespace and a host canonical', () => {
    const wire = encodeAuthorizationPolicies(setFor());
    const rule = wire[1]!.rules![0]!;
    expect(rule.from![0]!.principals).to.deep.equal([{ exact: 'cluster.local/ns/bar/sa/sleep' }, { suffix: '/sa/client' }]);
    expect(rule.to![0]!.methods).to.deep.equal([{ exact: 'GET' }, { prefix: 'P' }]);
    expect(rule.to![0]!.hosts).to.deep.equal([{ host: { exact: 'web.foo.svc' } }, { host: { suffix: '.example.org' }, port: '8080' }]);
    expect(wire[1]!.rules![1]!.from![0]!.serviceAccounts).to.deep.equal([{ namespace: 'bar', name: 'sleep' }, { namespace: 'foo', name: 'local' }]);
    expect(wire[1]!.dryRun).to.equal(true);
    expect(wire[4]).to.deep.equal({ namespace: 'foo', name: 'nothing', creationTimestamp: '2024-01-05T00:00:00.000Z', action: 'ALLOW', dryRun: false });
  });

  it('Should build frozen compiled policies that serialise back to what was pushed', () => {
    const b = body(setFor()) as { policies: unknown[] };
    const decoded = decodeAuthorizationPolicies(b);
    expect(decoded[0]).to.be.instanceOf(CompiledAuthorizationPolicy);
    expect(Object.isFrozen(decoded[0])).to.equal(true);
    expect(JSON.parse(JSON.stringify(decoded))).to.deep.equal(b.policies);
  });

  it('Should take an empty list without wireVersion (it means the same in every version), and refuse a non-empty one', () => {
    expect(decodeAuthorizationPolicies({ policies: [] })).to.deep.equal([]);
    const manifests = { policies: [{ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'a', namespace: 'foo' }, spec: {} }] };
    const e = refusal(manifests);
    expect(e.code).to.equal(POLICY_CODES.WIRE_VERSION);
    expect(e.message).to.contain('wireVersion');
  });

  it('Should refuse a wire version it does not decode', () => {
    const b = body(setFor()) as Record<string, unknown>;
    b['wireVersion'] = AUTHZ_WIRE_VERSION + 1;
    const e = refusal(b);
    expect(e.code).to.equal(POLICY_CODES.WIRE_VERSION);
    expect(e.issues[0]!.path).to.equal('wireVersion');
  });

  // Each malformed field is refused with its path and TRELLIS_POLICY_WIRE_FIELD (the sidecar NACKs, keeping its set).
  const fieldCases: Array<{ name: string; edit: (p: Record<string, any>) => void; path: string }> = [
    { name: 'a missing name', edit: (p) => delete p.name, path: 'policies[1].name' },
    { name: 'an unknown action (CUSTOM is never sent)', edit: (p) => (p.action = 'CUSTOM'), path: 'policies[1].action' },
    { name: 'a dryRun that is not a boolean', edit: (p) => (p.dryRun = 'true'), path: 'policies[1].dryRun' },
    { name: 'a creationTimestamp that is not a date', edit: (p) => (p.creationTimestamp = 'yesterday'), path: 'policies[1].creationTimestamp' },
    { name: 'an unknown field on a policy', edit: (p) => (p.when = [{ key: 'request.headers[x]', values: ['1'] }]), path: 'policies[1].when' },
    { name: 'an unknown condition on a rule (a newer control plane)', edit: (p) => (p.rules[0].when = []), path: 'policies[1].rules[0].when' },
    { name: 'an empty rules list', edit: (p) => (p.rules = []), path: 'policies[1].rules' },
    { name: 'an empty from list', edit: (p) => (p.rules[0].from = []), path: 'policies[1].rules[0].from' },
    { name: 'a principal given as a plain string', edit: (p) => (p.rules[0].from[0].principals[1] = '*/sa/client'), path: 'policies[1].rules[0].from[0].principals[1]' },
    { name: 'a pattern with two kinds', edit: (p) => (p.rules[0].from[0].principals[0] = { exact: 'a', prefix: 'b' }), path: 'policies[1].rules[0].from[0].principals[0]' },
    { name: 'a pattern with a star in its value', edit: (p) => (p.rules[0].to[0].paths[0] = { prefix: '/api/*' }), path: 'policies[1].rules[0].to[0].paths[0].prefix' },
    { name: 'an any that is not true', edit: (p) => (p.rules[0].to[0].methods[0] = { any: false }), path: 'policies[1].rules[0].to[0].methods[0].any' },
    { name: 'an unknown pattern kind', edit: (p) => (p.rules[0].to[0].methods[0] = { regex: 'G.*' }), path: 'policies[1].rules[0].to[0].methods[0].regex' },
    { name: 'a malformed IP block', edit: (p) => (p.rules[0].from[0].ipBlocks[0] = '10.0.0.0/33'), path: 'policies[1].rules[0].from[0].ipBlocks[0]' },
    { name: 'a port out of range', edit: (p) => (p.rules[0].to[0].ports[0] = 70000), path: 'policies[1].rules[0].to[0].ports[0]' },
    { name: 'a port given as a string', edit: (p) => (p.rules[0].to[0].ports[0] = '8080'), path: 'policies[1].rules[0].to[0].ports[0]' },
    { name: 'a host that is not canonical', edit: (p) => (p.rules[0].to[0].hosts[0] = { host: { exact: 'Web.foo.svc' } }), path: 'policies[1].rules[0].to[0].hosts[0].host.exact' },
    { name: 'a host port that is not digits', edit: (p) => (p.rules[0].to[0].hosts[1].port = '*'), path: 'policies[1].rules[0].to[0].hosts[1].port' },
    { name: 'a service account without a namespace', edit: (p) => delete p.rules[1].from[0].serviceAccounts[0].namespace, path: 'policies[1].rules[1].from[0].serviceAccounts[0].namespace' },
  ];
  for (const c of fieldCases) {
    it(`Should refuse ${c.name}, naming the field`, () => {
      const e = refusal(mutated(c.edit));
      expect(e.code).to.equal(POLICY_CODES.WIRE_FIELD);
      expect(e.issues.map((i) => i.path)).to.include(c.path);
      expect(e.message).to.contain(c.path).and.contain(POLICY_CODES.WIRE_FIELD);
    });
  }

  it('Should report every malformed field of a push, not only the first', () => {
    const e = refusal(
      mutated((p) => {
        p.action = 'MAYBE';
        p.rules[0].to[0].ports[0] = -1;
      }),
    );
    expect(e.issues.map((i) => i.path)).to.deep.equal(['policies[1].action', 'policies[1].rules[0].to[0].ports[0]']);
  });

  it('Should refuse policies out of creation order or sent twice', () => {
    const b = body(setFor()) as { policies: unknown[] };
    const swapped = { ...b, policies: [b.policies[1], b.policies[0], ...b.policies.slice(2)] };
    expect(refusal(swapped).code).to.equal(POLICY_CODES.WIRE_ORDER);
    const twice = { ...b, policies: [...b.policies, b.policies[4]] };
    const e = refusal(twice);
    expect(e.code).to.equal(POLICY_CODES.WIRE_ORDER);
    expect(e.message).to.contain('foo/nothing is sent twice');
  });

  it('Should refuse a body that is not an object or has no policy list', () => {
    expect(refusal([]).code).to.equal(POLICY_CODES.WIRE_FIELD);
    expect(refusal({ wireVersion: 1 }).issues[0]!.path).to.equal('policies');
  });
});
