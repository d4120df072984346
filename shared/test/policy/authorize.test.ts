import { expect } from 'chai';
import { authorize, buildPolicySet, selectAuthorizationPolicies, type AuthorizeOptions, type AuthzRequest } from '../../src';
import { policies, policySet } from './policy-fixtures';

const ROOT = 'trellis-system';
const web = { namespace: 'foo', labels: { app: 'web' } };
const SLEEP = 'spiffe://cluster.local/ns/bar/sa/sleep';
const OTHER = 'spiffe://cluster.local/ns/baz/sa/other';

/** An AuthorizationPolicy document; `spec` is YAML flow. */
function ap(name: string, spec: string, ns = 'foo', meta = ''): string {
  return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n${meta}spec: ${spec}\n---\n`;
}

interface Case {
  name: string;
  yaml: string;
  req: AuthzRequest;
  decision: 'ALLOW' | 'DENY';
  code: string;
  policy?: string;
  ruleIndex?: number;
  opts?: AuthorizeOptions;
  workload?: { namespace: string; labels: Record<string, string> };
}

const tcp = (principal?: string, port = 8080, sourceIp?: string): AuthzRequest => ({ port, ...(principal ? { principal } : {}), ...(sourceIp ? { sourceIp } : {}) });
const http = (principal: string | undefined, method: string, path: string, host?: string, port = 8080): AuthzRequest => ({ ...tcp(principal, port), http: { method, path, ...(host ? { host } : {}) } });

const cases: Case[] = [
  // Order and empty policies
  { name: 'no policy allows', yaml: '', req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'an ALLOW with spec: {} denies everything', yaml: ap('nothing', '{}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an ALLOW with rules: [] denies everything', yaml: ap('nothing', '{rules: []}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an ALLOW with an empty rule allows everything, plaintext too', yaml: ap('all', '{rules: [{}]}'), req: tcp(), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/all', ruleIndex: 0 },
  { name: 'a matching DENY wins over a matching ALLOW', yaml: ap('all', '{rules: [{}]}') + ap('no', '{action: DENY, rules: [{from: [{source: {namespaces: [bar]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/no', ruleIndex: 0 },
  { name: 'a non-matching DENY and no ALLOW allows', yaml: ap('no', '{action: DENY, rules: [{from: [{source: {namespaces: [baz]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'AUDIT never decides (alone: allowed)', yaml: ap('aud', '{action: AUDIT, rules: [{}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'AUDIT never decides (with an empty ALLOW: denied)', yaml: ap('aud', '{action: AUDIT, rules: [{}]}') + ap('nothing', '{}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'the second rule of an ALLOW can match', yaml: ap('two', '{rules: [{from: [{source: {namespaces: [nope]}}]}, {to: [{operation: {ports: ["8080"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/two', ruleIndex: 1 },
  // String matching on principals
  { name: 'an exact principal', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'an exact principal does not match another', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}]}'), req: tcp(OTHER), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a principal prefix', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/*"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a principal prefix that does not match', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/*"]}}]}]}'), req: tcp(OTHER), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a principal suffix', yaml: ap('p', '{rules: [{from: [{source: {principals: ["*/sa/sleep"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a principal "*" means any authenticated peer', yaml: ap('p', '{rules: [{from: [{source: {principals: ["*"]}}]}]}'), req: tcp(OTHER), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a principal "*" does not match plaintext', yaml: ap('p', '{rules: [{from: [{source: {principals: ["*"]}}]}]}'), req: tcp(), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a principal in another trust domain', yaml: ap('p', '{rules: [{from: [{source: {principals: ["other.td/ns/bar/sa/sleep"]}}]}]}'), req: tcp('spiffe://other.td/ns/bar/sa/sleep'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'the same path in another trust domain is not the same principal', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}]}'), req: tcp('spiffe://evil.td/ns/bar/sa/sleep'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a trust-domain alias matches the local trust domain', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}]}'), req: tcp('spiffe://td1/ns/bar/sa/sleep'), opts: { trustDomain: 'td1', trustDomainAliases: ['cluster.local'] }, decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'the local trust domain matches a principal named in an alias, and a second alias matches too', yaml: ap('p', '{rules: [{from: [{source: {principals: ["td1/ns/bar/sa/sleep"]}}]}]}'), req: tcp('spiffe://some-td/ns/bar/sa/sleep'), opts: { trustDomain: 'td1', trustDomainAliases: ['cluster.local', 'some-td'] }, decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a trust domain that is not an alias does not match a principal named in one', yaml: ap('p', '{rules: [{from: [{source: {principals: ["td1/ns/bar/sa/sleep"]}}]}]}'), req: tcp('spiffe://evil/ns/bar/sa/sleep'), opts: { trustDomain: 'td1', trustDomainAliases: ['cluster.local'] }, decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a principal prefix matches across trust-domain aliases', yaml: ap('p', '{rules: [{from: [{source: {principals: ["cluster.local/ns/bar/*"]}}]}]}'), req: tcp('spiffe://td1/ns/bar/sa/sleep'), opts: { trustDomain: 'td1', trustDomainAliases: ['cluster.local'] }, decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a principal whose trust domain breaks the SPIFFE rules (upper case) names no trust domain, so no alias applies', yaml: ap('p', '{rules: [{from: [{source: {principals: ["Cluster.Local/ns/bar/*"]}}]}]}'), req: tcp('spiffe://td1/ns/bar/sa/sleep'), opts: { trustDomain: 'td1', trustDomainAliases: ['Cluster.Local'] }, decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a peer ID that is not a valid SPIFFE ID is no identity for an ALLOW (fail closed)', yaml: ap('p', '{rules: [{from: [{source: {principals: ["*"]}}]}]}'), req: tcp('spiffe://cluster.local/ns/bar/sa/sle%65p'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a peer ID that is not a valid SPIFFE ID still meets a DENY on principals (fail closed)', yaml: ap('p', '{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/bar/sa/other"]}}]}]}'), req: tcp('spiffe://cluster.local/ns/bar/sa/[x]'), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  // Namespaces
  { name: 'a source namespace', yaml: ap('n', '{rules: [{from: [{source: {namespaces: [bar]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/n', ruleIndex: 0 },
  { name: 'a source namespace prefix', yaml: ap('n', '{rules: [{from: [{source: {namespaces: ["ba*"]}}]}]}'), req: tcp(OTHER), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/n', ruleIndex: 0 },
  { name: 'another source namespace', yaml: ap('n', '{rules: [{from: [{source: {namespaces: [bar]}}]}]}'), req: tcp(OTHER), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'notNamespaces allows the others', yaml: ap('n', '{rules: [{from: [{source: {notNamespaces: [bar]}}]}]}'), req: tcp(OTHER), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/n', ruleIndex: 0 },
  { name: 'notNamespaces refuses the named one', yaml: ap('n', '{rules: [{from: [{source: {notNamespaces: [bar]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an ALLOW notNamespaces never admits plaintext (fail closed)', yaml: ap('n', '{rules: [{from: [{source: {notNamespaces: [bar]}}]}]}'), req: tcp(), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a namespace rule does not match a non-Kubernetes SPIFFE ID', yaml: ap('n', '{rules: [{from: [{source: {namespaces: ["*"]}}]}]}'), req: tcp('spiffe://cluster.local/vm/db'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  // The PERMISSIVE plaintext bypass, closed
  { name: 'a DENY on principals denies plaintext', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/bad/sa/x"]}}]}]}'), req: tcp(), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'a DENY on namespaces denies plaintext', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {namespaces: [bad]}}]}]}'), req: tcp(), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'a DENY on notPrincipals denies plaintext', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {notPrincipals: ["cluster.local/ns/bar/sa/sleep"]}}]}]}'), req: tcp(), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'a DENY on notNamespaces denies plaintext', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {notNamespaces: [bar]}}]}]}'), req: tcp(), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'a DENY on notNamespaces lets the named namespace through', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {notNamespaces: [bar]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'a DENY on principals does not deny another mTLS peer', yaml: ap('d', '{action: DENY, rules: [{from: [{source: {principals: ["cluster.local/ns/bad/sa/x"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  // IP blocks
  { name: 'an ipBlocks CIDR', yaml: ap('ip', '{rules: [{from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]}]}'), req: tcp(undefined, 8080, '10.1.2.3'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/ip', ruleIndex: 0 },
  { name: 'an address outside ipBlocks', yaml: ap('ip', '{rules: [{from: [{source: {ipBlocks: ["10.0.0.0/8", "192.168.1.1"]}}]}]}'), req: tcp(undefined, 8080, '11.1.2.3'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an IPv6 block', yaml: ap('ip', '{rules: [{from: [{source: {ipBlocks: ["fd00::/8"]}}]}]}'), req: tcp(undefined, 8080, 'fd12::1'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/ip', ruleIndex: 0 },
  { name: 'an unknown source address never satisfies an ALLOW ipBlocks', yaml: ap('ip', '{rules: [{from: [{source: {ipBlocks: ["0.0.0.0/0"]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an unknown source address is denied by a DENY notIpBlocks', yaml: ap('ip', '{action: DENY, rules: [{from: [{source: {notIpBlocks: ["10.0.0.0/8"]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/ip', ruleIndex: 0 },
  // Ports
  { name: 'a port', yaml: ap('port', '{rules: [{to: [{operation: {ports: ["8080"]}}]}]}'), req: tcp(SLEEP, 8080), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/port', ruleIndex: 0 },
  { name: 'another port', yaml: ap('port', '{rules: [{to: [{operation: {ports: ["8080"]}}]}]}'), req: tcp(SLEEP, 9090), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'notPorts', yaml: ap('port', '{rules: [{to: [{operation: {notPorts: ["8080"]}}]}]}'), req: tcp(SLEEP, 8080), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'from AND to must both match', yaml: ap('both', '{rules: [{from: [{source: {namespaces: [bar]}}], to: [{operation: {ports: ["9090"]}}]}]}'), req: tcp(SLEEP, 8080), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'any of several from entries', yaml: ap('or', '{rules: [{from: [{source: {namespaces: [nope]}}, {source: {principals: ["*/sa/sleep"]}}]}]}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/or', ruleIndex: 0 },
  { name: 'all fields of one source', yaml: ap('and', '{rules: [{from: [{source: {namespaces: [bar], ipBlocks: ["10.0.0.0/8"]}}]}]}'), req: tcp(SLEEP, 8080, '192.168.0.1'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  // HTTP fields
  { name: 'an HTTP method', yaml: ap('m', '{rules: [{to: [{operation: {methods: [GET]}}]}]}'), req: http(SLEEP, 'GET', '/'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/m', ruleIndex: 0 },
  { name: 'another HTTP method', yaml: ap('m', '{rules: [{to: [{operation: {methods: [GET]}}]}]}'), req: http(SLEEP, 'POST', '/'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'an ALLOW with HTTP fields never matches a TCP request', yaml: ap('m', '{rules: [{to: [{operation: {methods: ["*"]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a DENY with HTTP fields denies a TCP request on its other fields', yaml: ap('d', '{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'a DENY with HTTP fields limited to another port leaves a TCP port alone', yaml: ap('d', '{action: DENY, rules: [{to: [{operation: {ports: ["9090"], methods: [DELETE]}}]}]}'), req: tcp(SLEEP, 8080), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'a path prefix', yaml: ap('p', '{rules: [{to: [{operation: {paths: ["/api/*"]}}]}]}'), req: http(SLEEP, 'GET', '/api/v1/x'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'a path outside the prefix', yaml: ap('p', '{rules: [{to: [{operation: {paths: ["/api/*"]}}]}]}'), req: http(SLEEP, 'GET', '/admin'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a path suffix', yaml: ap('p', '{rules: [{to: [{operation: {paths: ["*.png"]}}]}]}'), req: http(SLEEP, 'GET', '/img/a.png'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/p', ruleIndex: 0 },
  { name: 'an exact path ignores the query string', yaml: ap('d', '{action: DENY, rules: [{to: [{operation: {paths: ["/admin"]}}]}]}'), req: http(SLEEP, 'GET', '/admin?x=1'), decision: 'DENY', code: 'DENY_MATCHED', policy: 'foo/d', ruleIndex: 0 },
  { name: 'notPaths', yaml: ap('p', '{rules: [{to: [{operation: {notPaths: ["/admin*"]}}]}]}'), req: http(SLEEP, 'GET', '/admin/x'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'hosts match without case', yaml: ap('h', '{rules: [{to: [{operation: {hosts: ["*.example.com"]}}]}]}'), req: http(SLEEP, 'GET', '/', 'API.Example.com'), decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/h', ruleIndex: 0 },
  { name: 'notHosts', yaml: ap('h', '{rules: [{to: [{operation: {notHosts: ["a.example.com"]}}]}]}'), req: http(SLEEP, 'GET', '/', 'a.example.com'), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  // Service accounts
  { name: 'serviceAccounts ns/sa in the mesh trust domain', yaml: ap('sa', '{rules: [{from: [{source: {serviceAccounts: [bar/sleep]}}]}]}'), req: tcp(SLEEP), opts: { trustDomain: 'cluster.local' }, decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/sa', ruleIndex: 0 },
  { name: 'serviceAccounts sa means the policy namespace', yaml: ap('sa', '{rules: [{from: [{source: {serviceAccounts: [sleep]}}]}]}'), req: tcp('spiffe://cluster.local/ns/foo/sa/sleep'), opts: { trustDomain: 'cluster.local' }, decision: 'ALLOW', code: 'ALLOW_MATCHED', policy: 'foo/sa', ruleIndex: 0 },
  { name: 'serviceAccounts do not match a foreign trust domain', yaml: ap('sa', '{rules: [{from: [{source: {serviceAccounts: [bar/sleep]}}]}]}'), req: tcp('spiffe://evil/ns/bar/sa/sleep'), opts: { trustDomain: 'cluster.local' }, decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'serviceAccounts never allow when the trust domain is unknown', yaml: ap('sa', '{rules: [{from: [{source: {serviceAccounts: [bar/sleep]}}]}]}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  // Selection
  { name: 'a policy for other labels does not apply', yaml: ap('other', '{selector: {matchLabels: {app: db}}}'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  { name: 'a policy selecting the workload applies', yaml: ap('mine', '{selector: {matchLabels: {app: web}}}'), req: tcp(SLEEP), decision: 'DENY', code: 'NO_ALLOW_MATCHED' },
  { name: 'a root-namespace policy applies mesh-wide', yaml: ap('mesh', '{action: DENY, rules: [{from: [{source: {namespaces: [bar]}}]}]}', ROOT), req: tcp(SLEEP), decision: 'DENY', code: 'DENY_MATCHED', policy: `${ROOT}/mesh`, ruleIndex: 0 },
  { name: 'another namespace\'s policy does not apply', yaml: ap('theirs', '{}', 'bar'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
  // Dry run
  { name: 'a dry-run DENY is not enforced', yaml: ap('dry', '{action: DENY, rules: [{}]}', 'foo', '  annotations: {"istio.io/dry-run": "true"}\n'), req: tcp(SLEEP), decision: 'ALLOW', code: 'NO_ALLOW_POLICY' },
];

describe('authorize', () => {
  for (const c of cases) {
    it(`decides ${c.name}: ${c.decision}`, () => {
      const set = policySet(c.yaml);
      const r = authorize(set, c.workload ?? web, c.req, { rootNamespace: ROOT, ...c.opts });
      expect({ decision: r.decision, code: r.code }).to.deep.equal({ decision: c.decision, code: c.code });
      expect(r.policy ? `${r.policy.namespace}/${r.policy.name}` : undefined).to.equal(c.policy);
      expect(r.ruleIndex).to.equal(c.ruleIndex);
      expect(r.reason).to.be.a('string').and.not.equal('');
      // What a sidecar does: the same decision from the selected list it was pushed.
      const pushed = selectAuthorizationPolicies(set, c.workload ?? web, { rootNamespace: ROOT });
      expect(authorize(pushed, c.workload ?? web, c.req, c.opts).decision).to.equal(c.decision);
    });
  }

  it('marks audited requests without deciding', () => {
    const r = authorize(policySet(ap('aud', '{action: AUDIT, rules: [{to: [{operation: {ports: ["8080"]}}]}]}')), web, tcp(SLEEP), { rootNamespace: ROOT });
    expect(r.audit).to.deep.equal([{ policy: { namespace: 'foo', name: 'aud' }, ruleIndex: 0 }]);
    expect(authorize(policySet(ap('aud', '{action: AUDIT, rules: [{to: [{operation: {ports: ["1"]}}]}]}')), web, tcp(SLEEP), { rootNamespace: ROOT }).audit).to.equal(undefined);
  });

  it('reports what a dry-run policy would have decided', () => {
    const r = authorize(policySet(ap('dry', '{action: DENY, rules: [{}]}', 'foo', '  annotations: {"istio.io/dry-run": "true"}\n')), web, tcp(SLEEP), { rootNamespace: ROOT });
    expect(r.dryRun).to.deep.equal({ decision: 'DENY', code: 'DENY_MATCHED', policy: { namespace: 'foo', name: 'dry' }, ruleIndex: 0 });
  });

  it('says why a DENY applied to a plaintext or TCP request', () => {
    const r = authorize(policySet(ap('d', '{action: DENY, rules: [{from: [{source: {namespaces: [bad]}}], to: [{operation: {methods: [DELETE]}}]}]}')), web, tcp(), { rootNamespace: ROOT });
    expect(r.code).to.equal('DENY_MATCHED');
    expect(r.reason).to.match(/plaintext/).and.match(/non-HTTP/);
  });

  it('explains a TCP request that an HTTP-only ALLOW could not match', () => {
    const r = authorize(policySet(ap('m', '{rules: [{to: [{operation: {methods: [GET]}}]}]}')), web, tcp(SLEEP), { rootNamespace: ROOT });
    expect(r.reason).to.match(/not HTTP/);
  });

  it('uses the PeerAuthentication-free part of a mixed list', () => {
    const list = policies(`apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: foo}\nspec: {mtls: {mode: STRICT}}\n---\n${ap('nothing', '{}')}`);
    expect(authorize(list, web, tcp(SLEEP)).code).to.equal('NO_ALLOW_MATCHED');
    expect(authorize(buildPolicySet([]), web, tcp(SLEEP)).code).to.equal('NO_ALLOW_POLICY');
  });

  it('judges each principal and source address on its own after more distinct ones than its parse table holds', () => {
    const set = policySet(ap('ns-and-ip', '{rules: [{from: [{source: {namespaces: [bar], ipBlocks: ["10.0.0.0/8"]}}]}]}'));
    const decide = (principal: string, ip: string): string => authorize(set, web, tcp(principal, 8080, ip), { rootNamespace: ROOT }).decision;
    expect(decide(SLEEP, '10.1.2.3')).to.equal('ALLOW');
    for (let i = 0; i < 5000; i++) expect(decide(`spiffe://cluster.local/ns/n${i}/sa/s`, `192.168.${i >> 8}.${i & 255}`)).to.equal('DENY');
    expect(decide(SLEEP, '10.1.2.3')).to.equal('ALLOW');
    expect(decide(SLEEP, '192.168.0.1')).to.equal('DENY');
    expect(decide(OTHER, '10.1.2.3')).to.equal('DENY');
    expect(decide('spiffe://cluster.local/ns/bar/sa/x/extra', '10.1.2.3'), 'not a Kubernetes identity: no namespace').to.equal('DENY');
  });
});
