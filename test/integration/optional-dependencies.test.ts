/**
 * The rule for suites that need something `npm ci` does not bring (corpora,
 * SoftHSM2, network namespaces, ...): locally they skip with one line per
 * missing dependency saying what is missing and how to get it; with
 * TRELLIS_REQUIRE_<NAME>=1 (CI) they fail instead. Runs the real mocha.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, REPO_ROOT } from '@trellis/testkit';

const MOCHA = join(REPO_ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');

function mocha(files: string[], env: NodeJS.ProcessEnv): { status: number; out: string } {
  const r = spawnSync(process.execPath, [MOCHA, '--no-config', '--exit', '--timeout', '20000', '--reporter', join(REPO_ROOT, 'test', 'mocha-reporter.js'), ...files], {
    encoding: 'utf8',
    cwd: REPO_ROOT,
    env: { ...process.env, TRELLIS_REQUIRE_CORPORA: '', ...env },
    timeout: 120_000,
  });
  return { status: r.status ?? -1, out: `${r.stdout}\n${r.stderr}` };
}

describe('Suites that need an optional dependency', function () {
  this.timeout(120_000);
  const tmp = makeTmpDir('trellis-optional-');
  after(() => tmp.cleanup());
  const corpusSuites = ['identity/spiffe-id.test.js', 'identity/x509-svid.test.js', 'policy/istio-corpus.test.js', 'x509/trust-bundle.test.js'].map((f) => join(REPO_ROOT, 'shared', 'dist', 'test', f));
  const missing = join(tmp.dir, 'no-corpora-here');

  it('Should skip the corpus suites with one line saying what is missing and how to get it, and pass, when the corpora are absent', () => {
    const r = mocha(corpusSuites, { TRELLIS_CORPORA_DIR: missing });
    expect(r.status, r.out.slice(-3000)).to.equal(0);
    const skipLines = r.out.split('\n').filter((l) => l.includes('needing the test corpora'));
    expect(skipLines, r.out.slice(0, 3000)).to.have.length(1);
    expect(skipLines[0]).to.match(/skipped \d+ suites needing the test corpora: not found at .*no-corpora-here; .*TRELLIS_CORPORA_DIR/);
    expect(r.out).to.match(/^tests: [1-9]\d* passed, 0 failed, 1 skipped$/m);
  });

  it('Should fail the corpus suites, not skip them, under TRELLIS_REQUIRE_CORPORA=1', () => {
    const r = mocha(corpusSuites, { TRELLIS_CORPORA_DIR: missing, TRELLIS_REQUIRE_CORPORA: '1' });
    expect(r.status).to.not.equal(0);
    expect(r.out).to.contain('TRELLIS_REQUIRE_CORPORA=1 but the test corpora cannot be used here: not found at');
    expect(r.out).to.not.contain('needing the test corpora');
    expect(r.out).to.match(/^tests: \d+ passed, [1-9]\d* failed, 0 skipped$/m);
  });

  it('Should apply the same rule to any dependency, at load time and in a before hook', () => {
    const spec = join(tmp.dir, 'gadget.test.js');
    writeFileSync(
      spec,
      `const { optionalDependency, describeWith, itWith, skipUnless } = require(${JSON.stringify(join(REPO_ROOT, 'test', 'kit', 'dist', 'src'))});
const GADGET = optionalDependency({ name: 'the gadget', requireEnv: 'TRELLIS_REQUIRE_GADGET', probe: () => 'not installed (apt-get install gadget)' });
describeWith(GADGET, 'a gadget suite', () => { it('uses it', () => {}); });
describe('a mixed suite', () => {
  it('runs without it', () => {});
  itWith(GADGET, 'needs it', () => {});
});
describe('a run-time suite', function () {
  before(function () { skipUnless(this, GADGET); });
  it('needs it too', () => {});
});
`,
    );
    const local = mocha([spec], {});
    expect(local.status, local.out).to.equal(0);
    expect(local.out).to.contain('skipped 2 suites needing the gadget: not installed (apt-get install gadget) (TRELLIS_REQUIRE_GADGET=1 makes this a failure)');
    expect(local.out.split('\n').filter((l) => l.includes('the gadget')), local.out).to.have.length(1);
    expect(local.out).to.match(/^tests: 1 passed, 0 failed, 2 skipped$/m);
    const ci = mocha([spec], { TRELLIS_REQUIRE_GADGET: '1' });
    expect(ci.status).to.not.equal(0);
    expect(ci.out).to.match(/^tests: 1 passed, 3 failed, 0 skipped$/m);
    expect(ci.out).to.contain('TRELLIS_REQUIRE_GADGET=1 but the gadget cannot be used here: not installed (apt-get install gadget)');
  });
});
