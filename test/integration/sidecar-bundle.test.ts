/**
 * `trellis sidecar` runs from one bundled file (cli/dist/trellis-sidecar.js)
 * to keep a pod's start-up memory down. These tests hold the bundle to what
 * users rely on: it is what the binary runs, it behaves like the unbundled
 * dispatcher, and it carries exactly one copy of our code (a second copy of
 * @trellis/shared would break `instanceof` on its error classes).
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { runCli } from '@trellis/cli';
import { REPO_ROOT, trellisSync } from '@trellis/testkit';

const BUNDLE = join(REPO_ROOT, 'cli', 'dist', 'trellis-sidecar.js');

async function inProcess(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d: Buffer) => (stdout += String(d)));
  err.on('data', (d: Buffer) => (stderr += String(d)));
  const code = await runCli({ argv, stdout: out, stderr: err, env: {} });
  return { code, stdout, stderr };
}

describe('trellis sidecar bundle', function () {
  this.timeout(60_000);

  it('Should be built by npm run build next to the dispatcher', () => {
    expect(existsSync(BUNDLE), `${BUNDLE} missing: the build did not run cli/scripts/bundle-sidecar.js`).to.equal(true);
  });

  it('Should print the same help as the unbundled dispatcher', async () => {
    const viaBinary = trellisSync(['sidecar', '--help']);
    const direct = await inProcess(['sidecar', '--help']);
    expect(viaBinary.status).to.equal(0);
    expect(direct.code).to.equal(0);
    expect(viaBinary.stdout).to.equal(direct.stdout);
    expect(viaBinary.stdout).to.contain('usage: trellis sidecar --control-plane');
  });

  it('Should refuse an unknown flag and a missing setting with exit 2 and the reason, like the dispatcher', async () => {
    const bad = trellisSync(['sidecar', '--bogus']);
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.contain("Unknown option '--bogus'");
    const missing = trellisSync(['sidecar', '--namespace', 'x'], { env: { TRELLIS_CONTROL_PLANE: '', TRELLIS_CA_BUNDLE: '', TRELLIS_TOKEN_FILE: '', TRELLIS_SERVICE: '', TRELLIS_CONFIG: '' } });
    const direct = await inProcess(['sidecar', '--namespace', 'x']);
    expect(missing.status).to.equal(2);
    expect(missing.stderr).to.contain('--control-plane is required');
    expect(missing.stderr).to.equal(direct.stderr);
  });

  it('Should load none of our packages from their own dist folders (one copy of each class)', () => {
    const probe = `require(${JSON.stringify(BUNDLE)});
      const ours = Object.keys(require.cache).filter((f) => !f.includes('/node_modules/') && f !== ${JSON.stringify(BUNDLE)});
      process.stdout.write(JSON.stringify(ours));`;
    const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal([]);
  });

  it('Should leave the libraries it loads on demand (yaml, ajv) outside the bundle, and load them from a --config file', () => {
    const probe = `const b = require(${JSON.stringify(BUNDLE)});
      const before = Object.keys(require.cache).some((f) => /node_modules\\/(yaml|ajv)\\//.test(f));
      process.stdout.write(JSON.stringify({ before, exported: typeof b.runSidecarCli }));`;
    const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ before: false, exported: 'function' });
  });
});
