/**
 * Istio's integration-test policy templates (corpus `integration-templates`),
 * rendered with a fixed context: real-world policy shapes must load (or be
 * refused as unsupported, never ignored), a DestinationRule in the same file
 * is named as not a policy kind, and a few rendered policies decide what
 * Istio's integration tests expect.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildPolicySet, explainInbound, parsePolicyFile, POLICY_CODES, type AuthzRequest, type Policy } from '../../src';
import { CORPORA, corpusPath, describeWith } from '@trellis/testkit';
import { FIRST_SEEN } from './policy-fixtures';

const PORTS: Record<string, number> = { http: 18080, http2: 18085, tcp: 19090, grpc: 17070, https: 18443 };
const CONTEXT: Record<string, string> = {
  '.To.ServiceName': 'b',
  '.To.NamespaceName': 'ns-to',
  '.To.ClusterLocalFQDN': 'b.ns-to.svc.cluster.local',
  '.To.Config.Namespace.Prefix': 'ns-to',
  '.Namespace.Prefix': 'ns-to',
  '.MTLSMode': 'STRICT',
  '.MTLSModeOverride': 'DISABLE',
  '.TLSMode': 'ISTIO_MUTUAL',
  '.Allowed.NamespaceName': 'ns-allowed',
  '.Denied.NamespaceName': 'ns-denied',
  '.Allowed.SpiffeIdentity': 'cluster.local/ns/ns-allowed/sa/a',
  '.Denied.SpiffeIdentity': 'cluster.local/ns/ns-denied/sa/c',
  '.Allowed.NamespacedName': 'ns-allowed/a',
  '.Allowed.MustWorkloads.Addresses | toJson': '["10.1.0.1"]',
  '.Denied.MustWorkloads.Addresses | toJson': '["10.2.0.1"]',
  '.To.MustWorkloads.Addresses | toJson': '["10.0.0.1"]',
};

/** Go-template placeholders → values; an unknown placeholder fails the test rather than render wrong YAML. */
function render(text: string, file: string): string {
  return text.replace(/\{\{\s*(.*?)\s*\}\}/g, (_m, expr: string) => {
    const port = /^\(\s*\.To\.PortForName `(\w+)`\s*\)\.WorkloadPort$/.exec(expr);
    if (port) {
      const p = PORTS[port[1]!];
      if (p === undefined) throw new Error(`${file}: no port named ${port[1]}`);
      return String(p);
    }
    const v = CONTEXT[expr];
    if (v === undefined) throw new Error(`${file}: unknown placeholder {{ ${expr} }}`);
    return v;
  });
}

const dir = corpusPath('istio-security-policies', 'integration-templates');
/** The template files, listed inside suites gated on the corpora. */
const listTemplates = (): string[] => ['authz', 'reachability'].flatMap((d) => readdirSync(join(dir, d)).filter((f) => f.endsWith('.yaml.tmpl')).map((f) => `${d}/${f}`));

function load(name: string): { policies: Policy[]; issues: ReturnType<typeof parsePolicyFile>['issues'] } {
  return parsePolicyFile(render(readFileSync(join(dir, name), 'utf8'), name), name, { firstSeen: FIRST_SEEN, rootNamespace: 'istio-system' });
}

/** Templates that use something Trellis refuses (pinned: the list only shrinks on purpose). */
const UNSUPPORTED = new Set(['authz/conditions.yaml.tmpl', 'authz/path-templating.yaml.tmpl', 'authz/allow-trust-domain.yaml.tmpl']);

describeWith(CORPORA, 'Istio corpus: integration templates', () => {
  const templates = listTemplates();
  it('finds the templates', () => expect(templates.length).to.be.greaterThan(20));

  for (const name of templates) {
    it(`loads ${name} ${UNSUPPORTED.has(name) ? 'refusing only unsupported features' : 'without errors'}, naming non-policy kinds`, () => {
      const r = load(name);
      const errors = r.issues.filter((i) => i.severity === 'error');
      const policyKindErrors = errors.filter((e) => !(e.path === 'kind' || e.path === 'apiVersion'));
      const otherKinds = errors.filter((e) => e.path === 'kind' || e.path === 'apiVersion');
      for (const e of otherKinds) expect([POLICY_CODES.UNKNOWN_KIND, POLICY_CODES.BAD_API_VERSION], e.message).to.include(e.code);
      if (UNSUPPORTED.has(name)) {
        expect(policyKindErrors).to.not.have.length(0);
        for (const e of policyKindErrors) expect(e.code, `${e.path}: ${e.message}`).to.equal(POLICY_CODES.UNSUPPORTED);
      } else {
        expect(policyKindErrors, JSON.stringify(policyKindErrors)).to.deep.equal([]);
        const policyDocs = readFileSync(join(dir, name), 'utf8').match(/^kind: (PeerAuthentication|AuthorizationPolicy)\s*$/gm) ?? [];
        expect(r.policies.length, 'every policy document loads').to.equal(policyDocs.length);
      }
    });
  }

  const decide = (name: string, namespace: string, req: AuthzRequest, defaultMode: 'STRICT' | 'PERMISSIVE' = 'PERMISSIVE') =>
    explainInbound(buildPolicySet(load(name).policies), { namespace, labels: { app: 'b' } }, req, { rootNamespace: 'istio-system', defaultMode, trustDomain: 'cluster.local' });
  const ALLOWED = 'spiffe://cluster.local/ns/ns-allowed/sa/a';
  const DENIED = 'spiffe://cluster.local/ns/ns-denied/sa/c';
  const http = (principal: string | undefined, method: string, path: string, port = PORTS['http']!): AuthzRequest => ({ port, ...(principal ? { principal } : {}), http: { method, path } });

  const cases: Array<[string, string, AuthzRequest, 'ALLOW' | 'DENY']> = [
    ['authz/allow-principal.yaml.tmpl', 'GET /allow from the allowed principal', http(ALLOWED, 'GET', '/allow'), 'ALLOW'],
    ['authz/allow-principal.yaml.tmpl', 'GET /allow from another principal', http(DENIED, 'GET', '/allow'), 'DENY'],
    ['authz/allow-principal.yaml.tmpl', 'TCP from the allowed principal', { port: PORTS['tcp']!, principal: ALLOWED }, 'ALLOW'],
    ['authz/allow-namespace.yaml.tmpl', 'POST /allow from the allowed namespace', http(ALLOWED, 'POST', '/allow'), 'DENY'],
    ['authz/allow-serviceaccount.yaml.tmpl', 'GET /allow from the allowed service account', http(ALLOWED, 'GET', '/allow'), 'ALLOW'],
    ['authz/allow-serviceaccount.yaml.tmpl', 'GET /allow from another service account', http(DENIED, 'GET', '/allow'), 'DENY'],
    ['authz/deny-namespace.yaml.tmpl', 'GET /deny from the denied namespace', http(DENIED, 'GET', '/deny'), 'DENY'],
    ['authz/deny-namespace.yaml.tmpl', 'GET /deny/allow from the denied namespace', http(DENIED, 'GET', '/deny/allow'), 'ALLOW'],
    ['authz/deny-namespace.yaml.tmpl', 'GET /deny from the allowed namespace', http(ALLOWED, 'GET', '/deny'), 'ALLOW'],
    ['authz/deny-namespace.yaml.tmpl', 'TCP from the denied namespace', { port: PORTS['tcp']!, principal: DENIED }, 'DENY'],
    ['authz/not-namespace.yaml.tmpl', 'a request from the allowed namespace', http(ALLOWED, 'GET', '/'), 'ALLOW'],
    ['authz/not-namespace.yaml.tmpl', 'a request from another namespace', http(DENIED, 'GET', '/'), 'DENY'],
    ['authz/not-namespace.yaml.tmpl', 'a plaintext request (PERMISSIVE bypass closed)', http(undefined, 'GET', '/'), 'DENY'],
    ['authz/not-port.yaml.tmpl', 'a request on the excluded port', http(ALLOWED, 'GET', '/', PORTS['http2']), 'DENY'],
    ['authz/not-port.yaml.tmpl', 'a request on another port', http(ALLOWED, 'GET', '/'), 'ALLOW'],
  ];
  for (const [name, what, req, want] of cases) {
    it(`decides ${what} under ${name}: ${want}`, () => {
      const x = decide(name, 'default', req);
      expect(x.decision, x.reason).to.equal(want);
    });
  }

  it('refuses plaintext and admits mTLS under plaintext.yaml (DENY notPrincipals "*")', () => {
    expect(decide('authz/plaintext.yaml.tmpl', 'ns-to', http(undefined, 'GET', '/')).code).to.equal('DENY_MATCHED');
    expect(decide('authz/plaintext.yaml.tmpl', 'ns-to', http(ALLOWED, 'GET', '/')).decision).to.equal('ALLOW');
    expect(decide('authz/plaintext.yaml.tmpl', 'ns-to', http(ALLOWED, 'GET', '/')).mtlsMode).to.equal('PERMISSIVE');
  });

  it('lets the port-level override win over the workload mode (reachability port override)', () => {
    const name = 'reachability/workload-peer-authn-port-override.yaml.tmpl';
    expect(decide(name, 'default', { port: PORTS['http']! }, 'STRICT')).to.deep.include({ mtlsMode: 'DISABLE', decision: 'ALLOW' });
    expect(decide(name, 'default', { port: 9999 }, 'STRICT')).to.deep.include({ mtlsMode: 'STRICT', code: 'PLAINTEXT_REJECTED' });
  });
});
