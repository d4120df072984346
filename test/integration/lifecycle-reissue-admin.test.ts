/**
 * Lifecycle steps over the control plane's admin API, against a real
 * `trellis control-plane` process: `trellis revoke --admin` and `trellis ca
 * rotate-root|status --admin` act on the running control plane's CA dir, and
 * the admin API answers bad requests with a stable code and the mapped HTTP
 * status instead of acting.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { adminGet, adminRaw, FakeSidecar, initCa, startControlPlaneProcess, startShopSidecar, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

describe('lifecycle steps over the admin API (real trellis control-plane process)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  const sidecar = (name: string): FakeSidecar => startShopSidecar(cp, caDir, name, sidecars);

  const post = (path: string, body: string, method = 'POST'): ReturnType<typeof adminRaw> => adminRaw(cp, path, body, { method });

  before(async () => {
    tmp = makeTmpDir('trellis-lifecycle-admin-');
    caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    cp = await startControlPlaneProcess(caDir, policyDir);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('trellis revoke --admin writes the CA dir of the running control plane and pushes the entry to every sidecar; --lift takes it back', async () => {
    const a = sidecar('web');
    const b = sidecar('cart');
    await a.rotate();
    await b.rotate();
    const evil = `spiffe://${TD}/ns/shop/sa/evil`;
    const r = trellisSync(['revoke', '--admin', cp.admin, '--spiffe-id', evil, '--reason', 'key compromise', '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    expect((JSON.parse(r.stdout) as { revoked: { kind: string; value: string } }).revoked).to.include({ kind: 'spiffeId', value: evil });
    const onDisk = JSON.parse(readFileSync(join(caDir, 'revocations.json'), 'utf8')) as { spiffeIds: string[] };
    expect(onDisk.spiffeIds).to.deep.equal([evil]);
    expect(existsSync(join(caDir, '.lifecycle.lock')), 'the lifecycle lock is released').to.equal(false);
    const holds = (s: FakeSidecar, id: string): boolean => ((s.bodies.get('revocations')?.[0] as { spiffeIds?: string[] } | undefined)?.spiffeIds ?? []).includes(id);
    await waitFor(() => holds(a, evil) && holds(b, evil), 'the revocation to reach both sidecars');
    const lift = trellisSync(['revoke', '--admin', cp.admin, '--spiffe-id', evil, '--lift'], { env: cp.adminEnv });
    expect(lift.status, lift.stderr).to.equal(0);
    await waitFor(() => !holds(a, evil) && !holds(b, evil), 'the lifted entry to leave both sidecars');
  });

  it('trellis revoke --admin refuses to lift what is not revoked with the server code, and exits 1', () => {
    const r = trellisSync(['revoke', '--admin', cp.admin, '--serial', 'abcdef', '--lift'], { env: cp.adminEnv });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('TRELLIS_LIFECYCLE_NOT_REVOKED');
  });

  it('answers bad requests with the mapped HTTP status and a stable code, and acts on none of them', async () => {
    const before = readFileSync(join(caDir, 'revocations.json'), 'utf8');
    const cases: Array<{ path: string; body: string; method?: string; status: number; code: string; field?: string }> = [
      { path: '/lifecycle/revoke', body: '{not json', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY' },
      { path: '/lifecycle/revoke', body: '[1,2]', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY' },
      { path: '/lifecycle/revoke', body: '{}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'spiffeId' },
      { path: '/lifecycle/revoke', body: '{"spiffeId": 7}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'spiffeId' },
      { path: '/lifecycle/revoke', body: '{"spiffeId": "spiffe://a/b", "serial": "ab"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY' },
      { path: '/lifecycle/revoke', body: '{"spiffeId": "http://not-spiffe/x"}', status: 400, code: 'TRELLIS_LIFECYCLE_BAD_REVOCATION', field: 'spiffeId' },
      { path: '/lifecycle/revoke', body: '{"serial": "xyz"}', status: 400, code: 'TRELLIS_LIFECYCLE_BAD_REVOCATION', field: 'serial' },
      { path: '/lifecycle/revoke', body: JSON.stringify({ serial: 'ab', reason: 'x'.repeat(70_000) }), status: 400, code: 'TRELLIS_ADMIN_BAD_BODY' },
      { path: '/lifecycle/lift', body: '{"serial": "0123"}', status: 404, code: 'TRELLIS_LIFECYCLE_NOT_REVOKED' },
      { path: '/lifecycle/revoke', body: '', method: 'GET', status: 405, code: 'TRELLIS_ADMIN_METHOD_NOT_ALLOWED' },
      { path: '/lifecycle/status', body: '{}', method: 'POST', status: 405, code: 'TRELLIS_ADMIN_METHOD_NOT_ALLOWED' },
      { path: '/lifecycle/nope', body: '{}', status: 404, code: 'TRELLIS_ADMIN_NOT_FOUND' },
      { path: '/lifecycle/rotate-root', body: '{}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'newRootPem' },
      { path: '/lifecycle/rotate-root', body: '{"rootDir": "/x"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'rootDir' },
      { path: '/lifecycle/rotate-root', body: '{"reloadGraceSeconds": "soon"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'reloadGraceSeconds' },
      { path: '/lifecycle/rotate-root', body: '{"newRootPem": "x"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'intermediatePem' },
      { path: '/lifecycle/rotate-root', body: '{"newRootPem": "x", "intermediatePem": "y"}', status: 403, code: 'TRELLIS_LIFECYCLE_BAD_ROOT_PROOF' },
      { path: '/lifecycle/rotate-root', body: '{"keyType": "ec-p256"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'keyType' },
      { path: '/lifecycle/revoke', body: '{"serial": "ab", "caDir": "/etc"}', status: 400, code: 'TRELLIS_ADMIN_BAD_BODY', field: 'caDir' },
    ];
    for (const c of cases) {
      const r = await post(c.path, c.body, c.method);
      expect(r.status, `${c.method ?? 'POST'} ${c.path} ${c.body.slice(0, 60)}`).to.equal(c.status);
      expect(r.body.error?.code, `${c.path} ${c.body.slice(0, 60)}`).to.equal(c.code);
      if (c.field) expect(r.body.error?.details['field'], c.body).to.equal(c.field);
    }
    expect(readFileSync(join(caDir, 'revocations.json'), 'utf8')).to.equal(before);
    expect(existsSync(join(caDir, 'root-rotation.json'))).to.equal(false);
    expect((await adminGet(cp, '/readyz')).status, 'the server still serves').to.equal(200);
  });

  it('trellis ca status --admin shows what the --ca-dir form shows, and ca rotate-root --admin starts a rotation gated on the ACKs the control plane observes', async () => {
    const viaAdmin = trellisSync(['ca', 'status', '--admin', cp.admin, '-o', 'json'], { env: cp.adminEnv });
    expect(viaAdmin.status, viaAdmin.stderr).to.equal(0);
    const viaDir = trellisSync(['ca', 'status', '--ca-dir', caDir, '-o', 'json']);
    expect(JSON.parse(viaAdmin.stdout)).to.deep.equal(JSON.parse(viaDir.stdout));
    expect((JSON.parse(viaAdmin.stdout) as { rootRotation: unknown }).rootRotation).to.equal(null);

    const s = sidecar('watcher');
    await s.rotate();
    const start = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', join(tmp.dir, 'root2'), '--current-root-dir', caDir, '-o', 'json'], { env: cp.adminEnv });
    expect(start.status, start.stderr).to.equal(0);
    const step = JSON.parse(start.stdout) as { phase: string; roots: number };
    expect(step.roots).to.equal(2);
    expect(['bundle', 'renew']).to.include(step.phase);
    expect(readFileSync(join(tmp.dir, 'root2', 'root.key')).length).to.be.greaterThan(0);
    // Once every connected sidecar ACKed the two-root bundle, the next step switches to the new root.
    await waitFor(async () => {
      const r = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '-o', 'json'], { env: cp.adminEnv });
      return r.status === 0 && (JSON.parse(r.stdout) as { phase: string }).phase === 'renew';
    }, 'the rotation to pass the bundle gate', 30_000);
    const status = JSON.parse(trellisSync(['ca', 'status', '--admin', cp.admin, '-o', 'json'], { env: cp.adminEnv }).stdout) as { rootRotation: { phase: string }; roots: unknown[] };
    expect(status.rootRotation.phase).to.equal('renew');
    expect(status.roots).to.have.length(2);
    const again = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', join(tmp.dir, 'root3')], { env: cp.adminEnv });
    expect(again.status, 'a rotation in progress is advanced, not restarted').to.equal(0);
    expect(existsSync(join(tmp.dir, 'root3'))).to.equal(false);
  });
});
