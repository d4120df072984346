import { expect } from 'chai';
import fc from 'fast-check';
import { authorize, type AuthorizationPolicy, type AuthzOperation, type AuthzRequest, type AuthzRule, type AuthzSource } from '../../src';

const web = { namespace: 'foo', labels: { app: 'web' } };
const opts = { trustDomain: 'cluster.local', trustDomainAliases: ['old.td'] };

const tds = ['cluster.local', 'old.td', 'other.td'];
const nss = ['foo', 'bar', 'baz'];
const sas = ['a', 'b'];
const ports = [80, 8080, 9090];

const principalPattern = fc.oneof(
  fc.tuple(fc.constantFrom(...tds), fc.constantFrom(...nss), fc.constantFrom(...sas)).map(([t, n, s]) => `${t}/ns/${n}/sa/${s}`),
  fc.tuple(fc.constantFrom(...tds), fc.constantFrom(...nss)).map(([t, n]) => `${t}/ns/${n}/*`),
  fc.constantFrom(...sas).map((s) => `*/sa/${s}`),
  fc.constant('*'),
);
const nsPattern = fc.oneof(fc.constantFrom(...nss), fc.constant('b*'), fc.constant('*'));
const list = <T>(arb: fc.Arbitrary<T>) => fc.option(fc.array(arb, { minLength: 1, maxLength: 3 }), { nil: undefined });

const source: fc.Arbitrary<AuthzSource> = fc
  .record({
    principals: list(principalPattern),
    notPrincipals: list(principalPattern),
    namespaces: list(nsPattern),
    notNamespaces: list(nsPattern),
    ipBlocks: list(fc.constantFrom('10.0.0.0/8', '192.168.1.0/24', '10.1.2.3')),
    notIpBlocks: list(fc.constantFrom('10.0.0.0/8', '172.16.0.0/12')),
    serviceAccounts: list(fc.constantFrom('bar/a', 'foo/b', 'a')),
  })
  .map(stripUndefined);
const operation: fc.Arbitrary<AuthzOperation> = fc
  .record({
    ports: list(fc.constantFrom(...ports)),
    notPorts: list(fc.constantFrom(...ports)),
    methods: list(fc.constantFrom('GET', 'POST', 'P*', '*')),
    notMethods: list(fc.constantFrom('DELETE', 'GET')),
    paths: list(fc.constantFrom('/a', '/a/*', '*/b', '*')),
    hosts: list(fc.constantFrom('x.example.com', '*.example.com')),
  })
  .map(stripUndefined);
const rule: fc.Arbitrary<AuthzRule> = fc.record({ from: list(source), to: list(operation) }).map(stripUndefined);

let counter = 0;
const policy: fc.Arbitrary<AuthorizationPolicy> = fc
  .record({ action: fc.constantFrom('ALLOW', 'DENY', 'AUDIT' as const), rules: fc.option(fc.array(rule, { maxLength: 3 }), { nil: undefined }), dryRun: fc.boolean() })
  .map(({ action, rules, dryRun }) => ({
    kind: 'AuthorizationPolicy' as const,
    metadata: { name: `p${counter++}`, namespace: 'foo', creationTimestamp: '2024-01-01T00:00:00.000Z', creationTimestampSource: 'manifest' as const, apiVersion: 'security.istio.io/v1' },
    action: action as AuthorizationPolicy['action'],
    dryRun,
    ...(rules ? { rules } : {}),
  }));

const request: fc.Arbitrary<AuthzRequest> = fc
  .record({
    principal: fc.option(
      fc.tuple(fc.constantFrom(...tds), fc.constantFrom(...nss), fc.constantFrom(...sas)).map(([t, n, s]) => `spiffe://${t}/ns/${n}/sa/${s}`),
      { nil: undefined },
    ),
    sourceIp: fc.option(fc.constantFrom('10.1.2.3', '192.168.1.7', '172.16.0.1'), { nil: undefined }),
    port: fc.constantFrom(...ports),
    http: fc.option(fc.record({ method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), path: fc.constantFrom('/a', '/a/x', '/c/b'), host: fc.constantFrom('x.example.com', 'y.other') }), { nil: undefined }),
  })
  .map(stripUndefined);

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

describe('authorize (properties)', () => {
  it('never allows a request that any enforced DENY policy on its own denies', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 6 }), request, (policies, req) => {
        const decision = authorize(policies, web, req, opts);
        for (const d of policies.filter((p) => p.action === 'DENY' && !p.dryRun)) {
          if (authorize([d], web, req, opts).decision === 'DENY') {
            expect(decision.decision, `DENY ${d.metadata.name} covers the request`).to.equal('DENY');
          }
        }
      }),
      { numRuns: 400 },
    );
  });

  it('always denies a request described by a DENY rule, whatever else applies', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 6 }), request, fc.boolean(), (policies, req, byNamespace) => {
        const ns = req.principal ? /\/ns\/([^/]+)\//.exec(req.principal)![1]! : 'anything';
        const src: AuthzSource = byNamespace ? { namespaces: [ns] } : { principals: [req.principal ? req.principal.slice('spiffe://'.length) : 'cluster.local/ns/x/sa/y'] };
        const op: AuthzOperation = req.http ? { ports: [req.port], methods: [req.http.method] } : { ports: [req.port] };
        const deny: AuthorizationPolicy = { kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'foo', creationTimestamp: '2030-01-01T00:00:00.000Z', creationTimestampSource: 'manifest', apiVersion: 'security.istio.io/v1' }, action: 'DENY', dryRun: false, rules: [{ from: [src], to: [op] }] };
        const r = authorize([...policies, deny], web, req, opts);
        expect(r.decision).to.equal('DENY');
        expect(r.code).to.equal('DENY_MATCHED');
      }),
      { numRuns: 400 },
    );
  });

  it('denies plaintext under any DENY that names principals or namespaces', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 6 }), request, list(principalPattern), list(nsPattern), fc.constantFrom('principals', 'notPrincipals', 'namespaces', 'notNamespaces'), (policies, req, ps, ns, field) => {
        const values = (field.includes('rincipals') ? ps : ns) ?? ['x'];
        const plaintext: AuthzRequest = { ...req };
        delete plaintext.principal;
        const deny: AuthorizationPolicy = { kind: 'AuthorizationPolicy', metadata: { name: 'deny', namespace: 'foo', creationTimestamp: '2030-01-01T00:00:00.000Z', creationTimestampSource: 'manifest', apiVersion: 'security.istio.io/v1' }, action: 'DENY', dryRun: false, rules: [{ from: [{ [field]: values }] }] };
        expect(authorize([...policies, deny], web, plaintext, opts).decision).to.equal('DENY');
      }),
      { numRuns: 300 },
    );
  });
});
