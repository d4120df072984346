import { expect } from 'chai';
import { parsePolicyFile, POLICY_CODES, type PolicyIssue } from '../../src';
import { FIRST_SEEN, policies } from './policy-fixtures';

const parse = (yaml: string, rootNamespace?: string) => parsePolicyFile(yaml, 'p.yaml', { firstSeen: FIRST_SEEN, ...(rootNamespace ? { rootNamespace } : {}) });
const errors = (issues: PolicyIssue[]) => issues.filter((i) => i.severity === 'error');
const warnings = (issues: PolicyIssue[]) => issues.filter((i) => i.severity === 'warning');

const AP = (spec: string, meta = '') => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\n${meta}spec:\n${spec}`;
const PA = (spec: string, ns = 'foo') => `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: p\n  namespace: ${ns}\nspec:\n${spec}`;

describe('parsePolicyFile', () => {
  it('accepts the three API versions and normalises defaults', () => {
    for (const apiVersion of ['security.trellis.dev/v1', 'security.istio.io/v1', 'security.istio.io/v1beta1']) {
      const [p] = policies(`apiVersion: ${apiVersion}\nkind: PeerAuthentication\nmetadata:\n  name: x\n`);
      expect(p).to.deep.include({ kind: 'PeerAuthentication', mtlsMode: 'UNSET' });
      expect(p!.metadata).to.deep.include({ name: 'x', namespace: 'default', apiVersion, creationTimestamp: FIRST_SEEN.toISOString(), creationTimestampSource: 'firstSeen' });
    }
  });

  it('uses metadata.creationTimestamp when present', () => {
    const [p] = policies(`apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: x\n  creationTimestamp: "2020-05-06T07:08:09Z"\nspec: {}\n`);
    expect(p!.metadata.creationTimestamp).to.equal('2020-05-06T07:08:09.000Z');
    expect(p!.metadata.creationTimestampSource).to.equal('manifest');
  });

  it('returns deeply frozen policies', () => {
    const [p] = policies(AP('  rules:\n  - from:\n    - source:\n        principals: ["a/ns/b/sa/c"]\n'));
    expect(Object.isFrozen(p)).to.equal(true);
    if (p!.kind !== 'AuthorizationPolicy') throw new Error('kind');
    expect(Object.isFrozen(p.rules![0]!.from![0]!.principals)).to.equal(true);
  });

  it('reads every document of a multi-document file and skips empty ones', () => {
    const r = parse(`${PA('  mtls: {mode: STRICT}\n')}\n---\n---\n${AP('  rules: [{}]\n')}\n`);
    expect(errors(r.issues)).to.deep.equal([]);
    expect(r.policies.map((p) => p.kind)).to.deep.equal(['PeerAuthentication', 'AuthorizationPolicy']);
    expect(r.policies[1]!.metadata.source).to.deep.equal({ file: 'p.yaml', documentIndex: 2 });
  });

  it('reports every error of every document, not just the first', () => {
    const r = parse(`${PA('  mtls:\n    mode: BLAH\n  bogus: 1\n')}\n---\n${AP('  action: NOPE\n  rules:\n  - from: []\n')}\n`);
    const got = errors(r.issues).map((i) => [i.documentIndex, i.path, i.code]);
    expect(got).to.deep.include.members([
      [0, 'spec.mtls.mode', POLICY_CODES.INVALID_VALUE],
      [0, 'spec.bogus', POLICY_CODES.UNKNOWN_FIELD],
      [1, 'spec.action', POLICY_CODES.INVALID_VALUE],
      [1, 'spec.rules[0].from', POLICY_CODES.INVALID_VALUE],
    ]);
    expect(r.policies).to.have.length(0);
  });

  it('gives the line and column of the offending field', () => {
    const r = parse(PA('  mtls:\n    mode: BLAH\n'));
    const [e] = errors(r.issues);
    expect(e).to.deep.include({ file: 'p.yaml', documentIndex: 0, line: 8, column: 11, path: 'spec.mtls.mode' });
    const r2 = parse(`${PA('  mtls: {}\n')}\n---\n${AP('  rules:\n  - to:\n    - operation:\n        verbs: [GET]\n')}`);
    const [e2] = errors(r2.issues);
    expect(e2).to.deep.include({ documentIndex: 1, line: 19, column: 9, path: 'spec.rules[0].to[0].operation.verbs', code: POLICY_CODES.UNKNOWN_FIELD });
  });

  it('keeps valid documents of a file that has an invalid one', () => {
    const r = parse(`${PA('  mtls: {mode: STRICT}\n')}\n---\n${AP('  unknown: true\n')}`);
    expect(r.policies.map((p) => p.kind)).to.deep.equal(['PeerAuthentication']);
    expect(errors(r.issues)).to.have.length(1);
  });

  const refused: Array<[string, string, string, string]> = [
    ['bad YAML', 'a: [1,\n', POLICY_CODES.YAML, ''],
    ['duplicate keys', 'apiVersion: a\napiVersion: b\n', POLICY_CODES.YAML, ''],
    ['an unresolved alias', 'kind: *nowhere\n', POLICY_CODES.YAML, ''],
    ['an alias bomb', 'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n', POLICY_CODES.YAML, ''],
    ['a scalar document', 'hello\n', POLICY_CODES.NOT_A_MANIFEST, ''],
    ['an unknown apiVersion', 'apiVersion: security.istio.io/v2\nkind: PeerAuthentication\nmetadata: {name: a}\n', POLICY_CODES.BAD_API_VERSION, 'apiVersion'],
    ['a missing apiVersion', 'kind: PeerAuthentication\nmetadata: {name: a}\n', POLICY_CODES.MISSING_FIELD, 'apiVersion'],
    ['a missing kind', 'apiVersion: security.istio.io/v1\nmetadata: {name: a}\n', POLICY_CODES.MISSING_FIELD, 'kind'],
    ['an unknown kind', 'apiVersion: security.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n', POLICY_CODES.UNKNOWN_KIND, 'kind'],
    ['RequestAuthentication', 'apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\n', POLICY_CODES.UNSUPPORTED, 'kind'],
    ['a missing name', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {namespace: a}\n', POLICY_CODES.MISSING_FIELD, 'metadata.name'],
    ['a bad name', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: Bad_Name}\n', POLICY_CODES.INVALID_VALUE, 'metadata.name'],
    ['a bad creationTimestamp', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, creationTimestamp: yesterday}\n', POLICY_CODES.INVALID_VALUE, 'metadata.creationTimestamp'],
    ['an unknown metadata field', 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, owner: me}\n', POLICY_CODES.UNKNOWN_FIELD, 'metadata.owner'],
    ['an unknown mode', PA('  mtls: {mode: BLAH}\n'), POLICY_CODES.INVALID_VALUE, 'spec.mtls.mode'],
    ['portLevelMtls without selector', PA('  portLevelMtls:\n    "80": {mode: STRICT}\n'), POLICY_CODES.CONFLICT, 'spec.portLevelMtls'],
    ['portLevelMtls with an empty selector', PA('  selector: {}\n  portLevelMtls:\n    "80": {mode: STRICT}\n'), POLICY_CODES.CONFLICT, 'spec.portLevelMtls'],
    ['an empty portLevelMtls', PA('  selector: {matchLabels: {app: a}}\n  portLevelMtls: {}\n'), POLICY_CODES.INVALID_VALUE, 'spec.portLevelMtls'],
    ['port 0', PA('  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    "0": {mode: STRICT}\n'), POLICY_CODES.INVALID_VALUE, 'spec.portLevelMtls["0"]'],
    ['port 65536', PA('  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    65536: {mode: STRICT}\n'), POLICY_CODES.INVALID_VALUE, 'spec.portLevelMtls["65536"]'],
    ['a non-numeric port key', PA('  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    http: {mode: STRICT}\n'), POLICY_CODES.INVALID_VALUE, 'spec.portLevelMtls.http'],
    ['a wildcard selector value', AP('  selector: {matchLabels: {app: "web-*"}}\n'), POLICY_CODES.INVALID_VALUE, 'spec.selector.matchLabels.app'],
    ['an empty selector key', AP('  selector: {matchLabels: {"": x}}\n'), POLICY_CODES.INVALID_VALUE, 'spec.selector.matchLabels[""]'],
    ['action CUSTOM', AP('  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n'), POLICY_CODES.UNSUPPORTED, 'spec.action'],
    ['a provider without CUSTOM', AP('  provider: {name: ext}\n  rules: [{}]\n'), POLICY_CODES.CONFLICT, 'spec.provider'],
    ['targetRef', AP('  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n  rules: [{}]\n'), POLICY_CODES.UNSUPPORTED, 'spec.targetRef'],
    ['when conditions', AP('  rules:\n  - when:\n    - key: source.ip\n      values: ["1.2.3.4"]\n'), POLICY_CODES.UNSUPPORTED, 'spec.rules[0].when'],
    ['requestPrincipals', AP('  rules:\n  - from:\n    - source: {requestPrincipals: ["iss/sub"]}\n'), POLICY_CODES.UNSUPPORTED, 'spec.rules[0].from[0].source.requestPrincipals'],
    ['remoteIpBlocks', AP('  rules:\n  - from:\n    - source: {remoteIpBlocks: ["1.2.3.4"]}\n'), POLICY_CODES.UNSUPPORTED, 'spec.rules[0].from[0].source.remoteIpBlocks'],
    ['trustDomains', AP('  rules:\n  - from:\n    - source: {trustDomains: ["td"]}\n'), POLICY_CODES.UNSUPPORTED, 'spec.rules[0].from[0].source.trustDomains'],
    ['a path template', AP('  rules:\n  - to:\n    - operation: {paths: ["/a/{*}"]}\n'), POLICY_CODES.UNSUPPORTED, 'spec.rules[0].to[0].operation.paths[0]'],
    ['DENY without rules', AP('  action: DENY\n'), POLICY_CODES.MISSING_FIELD, 'spec.rules'],
    ['an empty from list', AP('  rules:\n  - from: []\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].from'],
    ['a from entry without source', AP('  rules:\n  - from: [{}]\n'), POLICY_CODES.MISSING_FIELD, 'spec.rules[0].from[0].source'],
    ['an empty source', AP('  rules:\n  - from: [{source: {}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].from[0].source'],
    ['an empty operation', AP('  rules:\n  - to: [{operation: {}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].to[0].operation'],
    ['an empty principal', AP('  rules:\n  - from: [{source: {principals: ["a", ""]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].from[0].source.principals[1]'],
    ['an empty paths list', AP('  rules:\n  - to: [{operation: {paths: []}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].to[0].operation.paths'],
    ['a star in the middle', AP('  rules:\n  - from: [{source: {principals: ["a*b"]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].from[0].source.principals[0]'],
    ['a bad CIDR', AP('  rules:\n  - from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].from[0].source.ipBlocks[0]'],
    ['a non-numeric port', AP('  rules:\n  - to: [{operation: {ports: ["http"]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].to[0].operation.ports[0]'],
    ['port 0 in an operation', AP('  rules:\n  - to: [{operation: {notPorts: ["0"]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].to[0].operation.notPorts[0]'],
    ['an integer port', AP('  rules:\n  - to: [{operation: {ports: [80]}}]\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules[0].to[0].operation.ports[0]'],
    ['serviceAccounts with principals', AP('  rules:\n  - from: [{source: {serviceAccounts: ["a/b"], principals: ["x"]}}]\n'), POLICY_CODES.CONFLICT, 'spec.rules[0].from[0].source.serviceAccounts'],
    ['a bad dry-run annotation', AP('  rules: [{}]\n', '  annotations: {"istio.io/dry-run": "maybe"}\n'), POLICY_CODES.INVALID_VALUE, 'metadata.annotations["istio.io/dry-run"]'],
    ['dry-run on AUDIT', AP('  action: AUDIT\n  rules: [{}]\n', '  annotations: {"istio.io/dry-run": "true"}\n'), POLICY_CODES.CONFLICT, 'metadata.annotations["istio.io/dry-run"]'],
    ['a list where a map is expected', AP('  rules: {from: x}\n'), POLICY_CODES.INVALID_VALUE, 'spec.rules'],
  ];
  for (const [what, yaml, code, path] of refused) {
    it(`refuses ${what} with ${code} at "${path}"`, () => {
      const r = parse(yaml);
      expect(r.policies, 'no policy from a refused document').to.have.length(0);
      const hit = errors(r.issues).find((i) => i.code === code && i.path === path);
      expect(hit, JSON.stringify(r.issues, null, 1)).to.not.equal(undefined);
      expect(hit!.line).to.be.greaterThan(0);
      if (code === POLICY_CODES.UNSUPPORTED) expect(hit!.message).to.match(/not supported/);
    });
  }

  it('refuses the same policy defined twice in one file', () => {
    const r = parse(`${PA('  mtls: {mode: STRICT}\n')}\n---\n${PA('  mtls: {mode: DISABLE}\n')}`);
    expect(r.policies).to.have.length(1);
    expect(errors(r.issues).map((i) => [i.code, i.documentIndex])).to.deep.equal([[POLICY_CODES.DUPLICATE, 1]]);
  });

  const warned: Array<[string, string, string, string?]> = [
    ['a selector PeerAuthentication in the root namespace', PA('  selector: {matchLabels: {app: a}}\n  mtls: {mode: DISABLE}\n', 'trellis-system'), POLICY_CODES.IGNORED_SELECTOR],
    ['a selector PeerAuthentication in a configured root namespace', PA('  selector: {matchLabels: {app: a}}\n', 'istio-system'), POLICY_CODES.IGNORED_SELECTOR, 'istio-system'],
    ['an empty selector', PA('  selector: {}\n'), POLICY_CODES.EMPTY_SELECTOR],
    ['a DENY with HTTP fields and no ports', AP('  action: DENY\n  rules:\n  - to: [{operation: {methods: [GET]}}]\n'), POLICY_CODES.DENY_HTTP_ON_TCP],
  ];
  for (const [what, yaml, code, root] of warned) {
    it(`accepts ${what} with a ${code} warning`, () => {
      const r = parse(yaml, root);
      expect(errors(r.issues)).to.deep.equal([]);
      expect(r.policies).to.have.length(1);
      expect(warnings(r.issues).map((i) => i.code)).to.deep.equal([code]);
    });
  }

  it('does not warn about a DENY with HTTP fields limited to ports', () => {
    const r = parse(AP('  action: DENY\n  rules:\n  - to: [{operation: {ports: ["8080"], methods: [GET]}}]\n'));
    expect(r.issues).to.deep.equal([]);
  });

  it('reads the items of a kubectl List (kubectl get -o yaml), with paths into the list', () => {
    const list = `apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: a
    namespace: foo
    uid: 0b7f
    resourceVersion: "42"
    generation: 1
    creationTimestamp: "2024-05-06T07:08:09Z"
    annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
  spec: {mtls: {mode: STRICT}}
  status: {}
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: b, namespace: foo}
  spec:
    action: MAYBE
metadata:
  resourceVersion: ""
`;
    const r = parse(list);
    expect(r.policies.map((p) => p.metadata.name)).to.deep.equal(['a']);
    expect(r.policies[0]!.metadata.creationTimestamp).to.equal('2024-05-06T07:08:09.000Z');
    expect(errors(r.issues).map((i) => [i.path, i.line, i.code])).to.deep.equal([['items[1].spec.action', 20, POLICY_CODES.INVALID_VALUE]]);
  });
});
