import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl, trellisSpawn, trellisSync } from '@trellis/testkit';

const A = 'a.example';
const B = 'b.example';

/** Runs `trellis control-plane` until it is ready (then stops it) or exits; returns exit code and stderr. */
function runControlPlane(args: string[], cwd: string): Promise<{ status: number | null; stderr: string; ready: boolean }> {
  return new Promise((resolve) => {
    const p = trellisSpawn(['control-plane', ...args, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd });
    let stderr = '';
    let ready = false;
    p.stdout!.resume();
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (!ready && stderr.includes('control plane ready')) {
        ready = true;
        p.kill('SIGTERM');
      }
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    // 'close', not 'exit': 'exit' can come before the last of stderr (the refusal checked) has been read.
    p.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr, ready });
    });
  });
}

describe('trellis control-plane --federation: the federated bundles are validated at start (real process)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-federation-cp-');
  const f = (n: string): string => join(tmp.dir, n);

  before(() => {
    for (const [dir, td] of [['caA', A], ['caB', B]] as const) {
      const init = trellisSync(['ca', 'init', '--dir', f(dir), '--trust-domain', td]);
      expect(init.status, init.stderr).to.equal(0);
    }
    const exported = trellisSync(['bundle', 'export', '--ca-dir', f('caB'), '--out', f('b.bundle.json')]);
    expect(exported.status, exported.stderr).to.equal(0);
    mkdirSync(f('policies'));
  });

  after(() => tmp.cleanup());

  const bad: Array<[string, string, RegExp]> = [
    ['our own trust domain listed as federated', `federatesWith:\n  - trustDomain: ${A}\n    bundleFile: b.bundle.json\n`, /federatesWith\[0\]\.trustDomain/],
    ['a bundle file that does not exist', `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: missing.json\n`, /missing\.json/],
    ['a trust domain that is not one', `federatesWith:\n  - trustDomain: "B Example"\n    bundleFile: b.bundle.json\n`, /federatesWith\[0\]\.trustDomain/],
    ['an entry without a bundle file', `federatesWith:\n  - trustDomain: ${B}\n`, /federatesWith\[0\]\.bundleFile/],
    ['a bundle that is not a SPIFFE bundle document nor PEM', `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: garbage.json\n`, /garbage\.json/],
  ];
  for (const [what, yaml, names] of bad) {
    it(`Should refuse to start with ${what}, naming the file and field (TRELLIS_LIFECYCLE_BAD_FEDERATION)`, async () => {
      writeFileSync(f('garbage.json'), '{"keys": 7}');
      writeFileSync(f('federation.yaml'), yaml);
      const r = await runControlPlane(['--ca-dir', f('caA'), '--policy-dir', f('policies'), '--federation', f('federation.yaml')], tmp.dir);
      expect(r.ready, r.stderr).to.equal(false);
      expect(r.status).to.equal(1);
      expect(r.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_FEDERATION');
      expect(r.stderr).to.match(names);
    });
  }

  it('Should refuse a federated bundle holding a workload certificate instead of CA certificates (TRELLIS_LIFECYCLE_BAD_FEDERATION)', async () => {
    const leafChain = trellisSync(['ca', 'sign', '--dir', f('caB'), '--csr', makeCsr(), '--spiffe-id', `spiffe://${B}/ns/x/sa/y`]);
    expect(leafChain.status, leafChain.stderr).to.equal(0);
    writeFileSync(f('leaf.pem'), leafChain.stdout);
    writeFileSync(f('federation.yaml'), `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: leaf.pem\n`);
    const r = await runControlPlane(['--ca-dir', f('caA'), '--policy-dir', f('policies'), '--federation', f('federation.yaml')], tmp.dir);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_FEDERATION');
    expect(r.stderr).to.contain('leaf.pem');
  });

  it('Should take the federation file from --config, resolved against the config file\'s folder, and serve its trust domains', async () => {
    mkdirSync(f('conf'));
    writeFileSync(f('conf/federation.yaml'), `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: ../b.bundle.json\n`);
    writeFileSync(f('conf/cp.yaml'), `caDir: ../caA\npolicyDir: ../policies\nfederation: federation.yaml\n`);
    const r = await runControlPlane(['--config', f('conf/cp.yaml')], tmp.dir);
    expect(r.ready, r.stderr).to.equal(true);
    const line = r.stderr.split('\n').find((l) => l.includes('control plane ready'))!;
    expect((JSON.parse(line) as { federatedTrustDomains: string[] }).federatedTrustDomains).to.deep.equal([B]);
  });

  it('Should refuse a config file whose federation field is not a path', async () => {
    writeFileSync(f('cp-bad.yaml'), `caDir: caA\npolicyDir: policies\nfederation: 7\n`);
    const r = await runControlPlane(['--config', f('cp-bad.yaml')], tmp.dir);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('TRELLIS_CP_CONFIG_INVALID');
    expect(r.stderr).to.contain('/federation');
  });

  function makeCsr(): string {
    expect(openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('leaf.key')]).status).to.equal(0);
    expect(openssl(['req', '-new', '-key', f('leaf.key'), '-subj', '/O=x', '-out', f('leaf.csr')]).status).to.equal(0);
    return f('leaf.csr');
  }
});
