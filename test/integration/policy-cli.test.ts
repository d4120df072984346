/**
 * `trellis validate` and `trellis policy explain` run as a user runs them:
 * the real binary in a child process, exit codes, every error on stderr with
 * file, line, column, field path and code, and the JSON keys scripts rely on.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CORPORA, corpusPath, itWith, makeTmpDir, trellisSync } from '@trellis/testkit';

const pa = (name: string, ns: string, spec: string) => `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec: ${spec}\n`;
const ap = (name: string, ns: string, spec: string) => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec: ${spec}\n`;

/** Lines of the form `file:line:col: document N path: message [CODE]`. */
function errorLines(stderr: string): Array<{ file: string; line: number; column: number; path: string; code: string }> {
  const out = [];
  for (const l of stderr.split('\n')) {
    const m = /^(.+?):(\d+):(\d+): document (\d+)(?: warning:)? (\S+): .* \[(TRELLIS_[A-Z_]+)\]$/.exec(l);
    if (m) out.push({ file: m[1]!, line: Number(m[2]), column: Number(m[3]), path: m[5]!, code: m[6]! });
  }
  return out;
}

describe('trellis validate (real binary)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-policy-cli-');
  after(() => tmp.cleanup());
  const file = (name: string, text: string) => {
    writeFileSync(join(tmp.dir, name), text);
    return name;
  };

  it('Should exit 0 with one line per document for valid manifests', () => {
    const f = file('good.yaml', `${pa('default', 'trellis-system', '{mtls: {mode: STRICT}}')}---\n${ap('web', 'foo', '{selector: {matchLabels: {app: web}}, rules: [{from: [{source: {namespaces: [bar]}}]}]}')}`);
    const r = trellisSync(['validate', f], { cwd: tmp.dir });
    expect(r.status, r.stderr).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).to.have.length(3);
    expect(lines[0]).to.contain('good.yaml: document 0: PeerAuthentication trellis-system/default');
    expect(lines[1]).to.contain('good.yaml: document 1: AuthorizationPolicy foo/web');
    expect(r.stderr).to.equal('');
  });

  it('Should exit 1 and list every error of every file with its position, path and code', () => {
    const a = file('bad-a.yaml', `${pa('p', 'foo', '{mtls: {mode: BLAH}, bogus: 1}')}---\n${ap('q', 'foo', '{action: DENY}')}`);
    const b = file('bad-b.yaml', ap('r', 'foo', '{rules: [{when: [{key: source.ip, values: ["1.2.3.4"]}]}], action: CUSTOM, provider: {name: x}}'));
    const r = trellisSync(['validate', a, b, 'missing.yaml'], { cwd: tmp.dir });
    expect(r.status).to.equal(1);
    const errs = errorLines(r.stderr).map((e) => `${e.file} ${e.path} ${e.code}`);
    expect(errs).to.have.members([
      'bad-a.yaml spec.mtls.mode TRELLIS_POLICY_INVALID_VALUE',
      'bad-a.yaml spec.bogus TRELLIS_POLICY_UNKNOWN_FIELD',
      'bad-a.yaml spec.rules TRELLIS_POLICY_MISSING_FIELD',
      'bad-b.yaml spec.rules[0].when TRELLIS_POLICY_UNSUPPORTED',
      'bad-b.yaml spec.action TRELLIS_POLICY_UNSUPPORTED',
    ]);
    expect(r.stderr).to.match(/^missing\.yaml:1:1: .*\[TRELLIS_POLICY_FILE\]$/m);
    expect(r.stderr).to.contain('invalid: 6 errors in 3 of 3 files');
    const mode = errorLines(r.stderr).find((e) => e.path === 'spec.mtls.mode')!;
    expect([mode.line, mode.column]).to.deep.equal([6, 21]);
    expect(r.stdout).to.equal('');
  });

  it('Should say that a supported-but-unimplemented field is not supported', () => {
    const f = file('unsupported.yaml', ap('r', 'foo', '{rules: [{from: [{source: {requestPrincipals: ["iss/sub"]}}]}]}'));
    const r = trellisSync(['validate', f], { cwd: tmp.dir });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/requestPrincipals.*not supported.*\[TRELLIS_POLICY_UNSUPPORTED\]/);
  });

  it('Should pass with warnings on stderr', () => {
    const f = file('warn.yaml', pa('p', 'trellis-system', '{selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}'));
    const r = trellisSync(['validate', f], { cwd: tmp.dir });
    expect(r.status).to.equal(0);
    expect(errorLines(r.stderr).map((e) => e.code)).to.deep.equal(['TRELLIS_POLICY_IGNORED_SELECTOR']);
    expect(r.stdout).to.contain('1 warning');
  });

  it('Should validate every policy file of a directory', () => {
    mkdirSync(join(tmp.dir, 'dir'));
    writeFileSync(join(tmp.dir, 'dir', 'a.yaml'), pa('a', 'foo', '{}'));
    writeFileSync(join(tmp.dir, 'dir', 'b.yml'), 'kind: [\n');
    writeFileSync(join(tmp.dir, 'dir', 'notes.md'), '# not a policy');
    const r = trellisSync(['validate', 'dir'], { cwd: tmp.dir });
    expect(r.status).to.equal(1);
    expect(r.stdout).to.contain('dir/a.yaml: document 0');
    expect(r.stderr).to.match(/^dir\/b\.yml:\d+:\d+: document 0 .*\[TRELLIS_POLICY_YAML\]$/m);
    expect(r.stderr).to.not.contain('notes.md');
  });

  it('Should print machine-readable results with -o json', () => {
    const r = trellisSync(['validate', 'bad-a.yaml', 'good.yaml', '-o', 'json'], { cwd: tmp.dir });
    expect(r.status).to.equal(1);
    const out = JSON.parse(r.stdout) as { valid: boolean; files: Array<{ file: string; documents: unknown[] }>; errors: Array<Record<string, unknown>> };
    expect(out.valid).to.equal(false);
    expect(out.files.map((f) => [f.file, f.documents.length])).to.deep.equal([['bad-a.yaml', 0], ['good.yaml', 2]]);
    expect(out.errors).to.have.length(3);
    for (const e of out.errors) expect(e).to.include.keys('file', 'documentIndex', 'line', 'column', 'path', 'code', 'message');
  });

  it('Should exit 2 without a file and on an unknown flag', () => {
    expect(trellisSync(['validate'], { cwd: tmp.dir }).status).to.equal(2);
    expect(trellisSync(['validate', 'good.yaml', '--frobnicate'], { cwd: tmp.dir }).status).to.equal(2);
  });

  itWith(CORPORA, 'Should accept Istio\'s own PeerAuthentication examples and refuse its AuthorizationPolicy that uses when', () => {
    const ds = corpusPath('istio-security-policies', 'validation-dataset');
    const ok = trellisSync(['validate', join(ds, 'security-v1-PeerAuthentication.yaml'), join(ds, 'security-v1beta1-PeerAuthentication.yaml')]);
    expect(ok.status, ok.stderr).to.equal(0);
    const refused = trellisSync(['validate', join(ds, 'security-v1-AuthorizationPolicy.yaml')]);
    expect(refused.status).to.equal(1);
    expect(errorLines(refused.stderr).map((e) => `${e.path} ${e.code}`)).to.deep.equal(['spec.rules[0].when TRELLIS_POLICY_UNSUPPORTED']);
  });
});

describe('trellis policy explain (real binary)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-policy-explain-');
  const dir = join(tmp.dir, 'policies');
  after(() => tmp.cleanup());
  before(() => {
    mkdirSync(dir);
    writeFileSync(join(dir, 'mesh.yaml'), pa('default', 'trellis-system', '{mtls: {mode: PERMISSIVE}}'));
    writeFileSync(
      join(dir, 'foo.yaml'),
      [
        pa('api', 'foo', '{selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}, portLevelMtls: {"9090": {mode: DISABLE}}}'),
        ap('deny-bad', 'foo', '{action: DENY, rules: [{from: [{source: {namespaces: [bad]}}]}]}'),
        ap('web-get', 'foo', '{selector: {matchLabels: {app: web}}, rules: [{to: [{operation: {methods: [GET], ports: ["8080"]}}]}]}'),
        ap('no-admin', 'foo', '{selector: {matchLabels: {app: admin}}, action: DENY, rules: [{to: [{operation: {paths: [/admin], ports: ["8080"]}}]}]}'),
      ].join('---\n'),
    );
  });

  const explain = (args: string[]) => {
    const r = trellisSync(['policy', 'explain', '--policy-dir', dir, '-o', 'json', ...args]);
    expect(r.status, r.stderr).to.equal(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  const cases: Array<[string, string[], { mtlsMode: string; decision: string; code: string }]> = [
    ['a plaintext request under PERMISSIVE with no policy', ['--namespace', 'bar', '--labels', 'app=db', '--port', '5432'], { mtlsMode: 'PERMISSIVE', decision: 'ALLOW', code: 'NO_ALLOW_POLICY' }],
    ['a plaintext request that a DENY on namespaces must still deny', ['--namespace', 'foo', '--labels', 'app=db', '--port', '5432', '--method', 'GET', '--path', '/'], { mtlsMode: 'PERMISSIVE', decision: 'DENY', code: 'DENY_MATCHED' }],
    ['an mTLS request from another namespace', ['--namespace', 'foo', '--labels', 'app=db', '--port', '5432', '--principal', 'spiffe://cluster.local/ns/ok/sa/x'], { mtlsMode: 'PERMISSIVE', decision: 'ALLOW', code: 'NO_ALLOW_POLICY' }],
    ['an mTLS request from the denied namespace', ['--namespace', 'foo', '--labels', 'app=db', '--port', '5432', '--principal', 'spiffe://cluster.local/ns/bad/sa/x'], { mtlsMode: 'PERMISSIVE', decision: 'DENY', code: 'DENY_MATCHED' }],
    ['a plaintext request to a STRICT workload', ['--namespace', 'foo', '--labels', 'app=api', '--port', '8080'], { mtlsMode: 'STRICT', decision: 'DENY', code: 'PLAINTEXT_REJECTED' }],
    ['a plaintext request to a port-level DISABLE', ['--namespace', 'foo', '--labels', 'app=api', '--port', '9090', '--principal', 'spiffe://cluster.local/ns/bad/sa/x'], { mtlsMode: 'DISABLE', decision: 'DENY', code: 'DENY_MATCHED' }],
    ['an HTTP GET matching an ALLOW', ['--namespace', 'foo', '--labels', 'app=web', '--port', '8080', '--principal', 'spiffe://cluster.local/ns/ok/sa/x', '--method', 'GET', '--path', '/'], { mtlsMode: 'PERMISSIVE', decision: 'ALLOW', code: 'ALLOW_MATCHED' }],
    ['an HTTP POST no ALLOW matches', ['--namespace', 'foo', '--labels', 'app=web', '--port', '8080', '--principal', 'spiffe://cluster.local/ns/ok/sa/x', '--method', 'POST', '--path', '/'], { mtlsMode: 'PERMISSIVE', decision: 'DENY', code: 'NO_ALLOW_MATCHED' }],
    ['a TCP request an HTTP-only ALLOW cannot match', ['--namespace', 'foo', '--labels', 'app=web', '--port', '8080', '--principal', 'spiffe://cluster.local/ns/ok/sa/x'], { mtlsMode: 'PERMISSIVE', decision: 'DENY', code: 'NO_ALLOW_MATCHED' }],
    ['the control plane default when no policy decides', ['--namespace', 'other', '--port', '80', '--root-namespace', 'mesh-root'], { mtlsMode: 'STRICT', decision: 'DENY', code: 'PLAINTEXT_REJECTED' }],
  ];
  for (const [what, args, want] of cases) {
    it(`Should explain ${what}: ${want.mtlsMode} ${want.decision}`, () => {
      const out = explain(args);
      expect(out).to.include.keys('mtlsMode', 'decision', 'reason');
      expect({ mtlsMode: out['mtlsMode'], decision: out['decision'], code: out['code'] }).to.deep.equal(want);
      expect(out['reason']).to.be.a('string').and.not.equal('');
    });
  }

  it('Should judge --path as a sidecar does: normalized with --path-normalization, and a path it refuses is BAD_REQUEST', () => {
    const base = ['--namespace', 'foo', '--labels', 'app=admin', '--port', '8080', '--principal', 'spiffe://cluster.local/ns/ok/sa/x', '--method', 'GET'];
    const dotted = explain([...base, '--path', '/x/../%61dmin?q=/../']);
    expect({ decision: dotted['decision'], code: dotted['code'] }).to.deep.equal({ decision: 'DENY', code: 'DENY_MATCHED' });
    expect((dotted['request'] as { http: { path: string } }).http.path).to.equal('/admin?q=/../');
    const none = explain([...base, '--path', '/x/../admin', '--path-normalization', 'NONE']);
    expect({ decision: none['decision'], code: none['code'] }).to.deep.equal({ decision: 'ALLOW', code: 'NO_ALLOW_POLICY' });
    const merged = explain([...base, '--path', '//admin', '--path-normalization', 'MERGE_SLASHES']);
    expect(merged['code']).to.equal('DENY_MATCHED');
    const refused = explain([...base, '--path', '/a%00']);
    expect({ decision: refused['decision'], code: refused['code'] }).to.deep.equal({ decision: 'DENY', code: 'BAD_REQUEST' });
    expect(refused['reason']).to.contain('400').and.contain('%00');
    const text = trellisSync(['policy', 'explain', '--policy-dir', dir, ...base, '--path', '/./admin']);
    expect(text.stdout).to.match(/^request {3}HTTP GET \/admin \(sent as \/\.\/admin, BASE\) from spiffe:/m);
    expect(trellisSync(['policy', 'explain', '--policy-dir', dir, ...base, '--path', '/', '--path-normalization', 'merge']).status).to.equal(2);
  });

  it('Should name the deciding policy and rule', () => {
    const out = explain(['--namespace', 'foo', '--labels', 'app=web', '--port', '8080', '--principal', 'spiffe://cluster.local/ns/ok/sa/x', '--method', 'GET', '--path', '/']);
    expect(out['policy']).to.deep.equal({ namespace: 'foo', name: 'web-get' });
    expect(out['ruleIndex']).to.equal(0);
    expect(out['mtlsDecidedBy']).to.deep.equal({ scope: 'mesh', policy: { namespace: 'trellis-system', name: 'default' } });
  });

  it('Should print a readable explanation without -o json', () => {
    const r = trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo', '--labels', 'app=api', '--port', '8080']);
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/^mtlsMode {2}STRICT \(workload policy foo\/api\)$/m);
    expect(r.stdout).to.match(/^decision {2}DENY \[PLAINTEXT_REJECTED\]$/m);
  });

  it('Should leave out a rejected file and say so', () => {
    const d2 = join(tmp.dir, 'with-bad');
    mkdirSync(d2);
    writeFileSync(join(d2, 'good.yaml'), ap('deny-all', 'foo', '{action: DENY, rules: [{}]}'));
    writeFileSync(join(d2, 'bad.yaml'), ap('allow', 'foo', '{rules: [{bogus: 1}]}'));
    const r = trellisSync(['policy', 'explain', '--policy-dir', d2, '--namespace', 'foo', '--port', '80', '--default-mode', 'PERMISSIVE', '-o', 'json']);
    expect(r.status).to.equal(0);
    expect(r.stderr).to.contain('bad.yaml is rejected').and.contain('TRELLIS_POLICY_UNKNOWN_FIELD');
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out['decision']).to.equal('DENY');
    expect(out['rejectedFiles']).to.deep.equal(['bad.yaml']);
  });

  it('Should refuse bad flags with exit 2 and a missing directory with exit 1', () => {
    expect(trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo']).status, 'no --port').to.equal(2);
    expect(trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo', '--port', '0']).status, 'port 0').to.equal(2);
    expect(trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo', '--port', '80', '--labels', 'app']).status, 'bad labels').to.equal(2);
    expect(trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo', '--port', '80', '--principal', 'cluster.local/ns/a/sa/b']).status, 'principal without scheme').to.equal(2);
    // Parsed by the shared SPIFFE ID parser: a principal no SVID could ever carry is a usage error, not a silent non-match.
    for (const bad of ['spiffe://cluster.local/ns/a/sa/b%41', 'spiffe://Cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/b/']) {
      const r = trellisSync(['policy', 'explain', '--policy-dir', dir, '--namespace', 'foo', '--port', '80', '--principal', bad]);
      expect(r.status, bad).to.equal(2);
      expect(r.stderr, bad).to.contain('--principal');
    }
    const missing = trellisSync(['policy', 'explain', '--policy-dir', join(tmp.dir, 'nope'), '--namespace', 'foo', '--port', '80']);
    expect(missing.status).to.equal(1);
    expect(missing.stderr).to.contain('[TRELLIS_POLICY_FILE]');
  });
});
