/**
 * The policy dir at a real `trellis control-plane`'s first load fails
 * closed: while any file fails validation (or the dir cannot be read) the
 * control plane reports not ready and serves no policy, so no sidecar can be
 * left without the ALLOW policy that file held (allow-all). Once every file
 * validates it serves them and reports ready. `--allow-invalid-policies`
 * opts in to serving the valid files at once.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { adminGet, adminJson, FakeSidecar, initCa, joinToken, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

const NOT_READY_LINE = '"control plane started but NOT ready';

describe('policy dir at first load (real process, fails closed)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  const running: ControlPlaneProcess[] = [];
  const sidecars: FakeSidecar[] = [];

  const readyz = async (cp: ControlPlaneProcess): Promise<number> => (await adminGet(cp, '/readyz')).status;

  /** A sidecar labelled app=web in namespace shop (attested by its token). */
  function web(cp: ControlPlaneProcess, name: string): FakeSidecar {
    const id = `spiffe://${TD}/ns/shop/sa/${name}`;
    const token = joinToken(caDir, id, ['--labels', 'app=web']);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token });
    sidecars.push(s);
    return s.start();
  }

  /** A policy dir holding the only ALLOW policy for app=web, and a broken file. */
  function policyDir(name: string): string {
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'web-allow.yaml'), allowWeb);
    writeFileSync(join(dir, 'broken.yaml'), allowWeb.replace('name: web-allow', 'name: web-allow-2').replace('action: ALLOW', 'action: MAYBE'));
    return dir;
  }

  before(() => {
    tmp = makeTmpDir('trellis-cp-policy-load-');
    caDir = join(tmp.dir, 'ca');
    initCa(caDir);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') for (const cp of running) process.stderr.write(`--- control plane ${cp.admin}\n${cp.logs.slice(-30).join('\n')}\n`);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    for (const cp of running) await cp.stop();
    tmp?.cleanup();
  });

  it('Should report not ready and serve no policy while a file fails validation at first load, then serve every file once it is fixed', async () => {
    const dir = policyDir('broken-at-start');
    const cp = await startControlPlaneProcess(caDir, dir, [], undefined, NOT_READY_LINE);
    running.push(cp);
    expect(await readyz(cp)).to.equal(503);
    const status = await adminJson<{ servable: boolean; files: Array<{ file: string; state: string; errors: string[] }> }>(cp, '/debug/policies');
    expect(status.servable).to.equal(false);
    expect(status.files.find((f) => f.file === 'broken.yaml')).to.deep.include({ state: 'rejected' });

    // A sidecar still gets its identity and the trust bundle, but no policy: it stays not ready and refuses inbound traffic.
    const s = web(cp, 'web');
    await s.rotate();
    await waitFor(() => s.last('bundle') !== undefined && s.last('revocations') !== undefined, 'the bundle and revocations');
    await new Promise((r) => setTimeout(r, 1000));
    expect(s.count('authz')).to.equal(0);
    expect(s.count('peer_authn')).to.equal(0);

    writeFileSync(join(dir, 'broken.yaml'), allowWeb.replace('name: web-allow', 'name: web-allow-2'));
    await waitFor(async () => (await readyz(cp)) === 200, 'readyz 200 once every file validates', 20_000);
    await waitFor(() => s.last('authz') !== undefined, 'the policies to be served');
    const policies = s.bodies.get('authz') as Array<{ policies: Array<{ name: string }> }>;
    expect(policies[0]!.policies.map((p) => p.name).sort()).to.deep.equal(['web-allow', 'web-allow-2']);
    expect(cp.logs.some((l) => l.includes('"control plane ready"'))).to.equal(true);
    s.stop();
  });

  it('Should not report ready while the policy dir cannot be read at first load', async () => {
    const dir = join(tmp.dir, 'not-yet');
    const cp = await startControlPlaneProcess(caDir, dir, [], undefined, NOT_READY_LINE);
    running.push(cp);
    expect(await readyz(cp)).to.equal(503);
    mkdirSync(dir);
    writeFileSync(join(dir, 'web-allow.yaml'), allowWeb);
    await waitFor(async () => (await readyz(cp)) === 200, 'readyz 200 once the dir is readable', 20_000);
  });

  it('Should serve the valid files at once with --allow-invalid-policies, and warn what that risks', async () => {
    const cp = await startControlPlaneProcess(caDir, policyDir('allowed'), ['--allow-invalid-policies']);
    running.push(cp);
    expect(await readyz(cp)).to.equal(200);
    expect(cp.logs.some((l) => l.includes('"level":"warn"') && l.includes('--allow-invalid-policies') && l.includes('allowed everything'))).to.equal(true);
    const s = web(cp, 'web-allowed');
    await waitFor(() => s.last('authz') !== undefined, 'the valid policies');
    const policies = s.bodies.get('authz') as Array<{ policies: Array<{ name: string }> }>;
    expect(policies[0]!.policies.map((p) => p.name)).to.deep.equal(['web-allow']);
    s.stop();
  });
});

const allowWeb = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web-allow
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/shop/sa/frontend"]
`;
