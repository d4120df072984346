/**
 * The CA lifecycle against a real `trellis control-plane` process and
 * sidecars speaking the real discovery protocol over loopback gRPC/TLS:
 * revocations made with `trellis revoke` reach every sidecar, and
 * `trellis ca rotate-root` gates on the bundle ACKs the control plane reports.
 */
import { expect } from 'chai';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EMPTY_REVOCATIONS, saveRevocationStore } from '@trellis/control-plane';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { adminGet, FakeSidecar, initCa, startControlPlaneProcess, startShopSidecar, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

describe('CA lifecycle with a running control plane (real processes, real gRPC/TLS)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  const sidecar = (name: string): FakeSidecar => startShopSidecar(cp, caDir, name, sidecars);

  before(async () => {
    tmp = makeTmpDir('trellis-lifecycle-cp-');
    caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    saveRevocationStore(join(caDir, 'revocations.json'), EMPTY_REVOCATIONS, new Date());
    cp = await startControlPlaneProcess(caDir, policyDir, ['--revocations', join(caDir, 'revocations.json')]);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('pushes an identity revoked with trellis revoke to every connected sidecar, and takes it back when lifted', async () => {
    const a = sidecar('web');
    const b = sidecar('cart');
    await a.rotate();
    await b.rotate();
    await waitFor(() => a.last('revocations') !== undefined && b.last('revocations') !== undefined, 'both sidecars to hold a revocation list');
    const evil = `spiffe://${TD}/ns/shop/sa/evil`;
    const r = trellisSync(['revoke', '--ca-dir', caDir, '--spiffe-id', evil, '--reason', 'key compromise']);
    expect(r.status, r.stderr).to.equal(0);
    const holds = (s: FakeSidecar, id: string): boolean => ((s.bodies.get('revocations')?.[0] as { spiffeIds?: string[] } | undefined)?.spiffeIds ?? []).includes(id);
    await waitFor(() => holds(a, evil) && holds(b, evil), 'the revocation to reach both sidecars');
    expect(trellisSync(['revoke', '--ca-dir', caDir, '--spiffe-id', evil, '--lift']).status).to.equal(0);
    await waitFor(() => !holds(a, evil) && !holds(b, evil), 'the lifted entry to leave both sidecars');
  });

  it('trellis check lists each connected sidecar leaf and the control plane serving certificate read over TLS', async () => {
    const s = sidecar('checked');
    await s.rotate();
    const r = trellisSync(['check', '--ca-dir', caDir, '--admin', cp.admin, '--tls', `control-plane=${cp.address}`, '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout) as { status: string; items: Array<{ kind: string; subject: string; status: string; notAfter: string }> };
    const leaf = report.items.find((i) => i.kind === 'leaf' && i.subject === `spiffe://${TD}/ns/shop/sa/checked`);
    expect(leaf, r.stdout).to.not.equal(undefined);
    expect(leaf!.status).to.equal('ok');
    expect(leaf!.notAfter).to.equal(s.creds!.notAfter.toISOString());
    const serving = report.items.find((i) => i.kind === 'serving');
    expect(serving, r.stdout).to.not.equal(undefined);
    expect(serving!.status).to.equal('ok');
    const down = trellisSync(['check', '--tls', 'injector=127.0.0.1:1', '-o', 'json']);
    expect((JSON.parse(down.stdout) as { notes: string[] }).notes.join(' ')).to.contain('cannot read the serving certificate of injector');
  });

  it('serves the lifecycle gauges on /metrics: expiry status per CA certificate, next intermediate, rotation phase, revocations', async () => {
    const text = (await adminGet(cp, '/metrics')).body;
    expect(text).to.match(/^trellis_lifecycle_certificate_status\{kind="intermediate",[^}]*\} 0$/m);
    expect(text).to.match(/^trellis_lifecycle_certificate_remaining_seconds\{kind="root",[^}]*\} \d+$/m);
    expect(text).to.match(/^trellis_lifecycle_next_intermediate_state 0$/m);
    expect(text).to.match(/^trellis_lifecycle_root_rotation_phase 0$/m);
    expect(text).to.match(/^trellis_lifecycle_revocations\{kind="spiffeId"\} \d+$/m);
  });

  it('ca rotate-root --admin waits for every connected sidecar to ACK the two-root bundle, then switches the CA to the new root', async () => {
    const s = sidecar('gate');
    await s.rotate();
    await waitFor(() => s.last('bundle') !== undefined, 'the sidecar to ACK a bundle');
    const r = trellisSync(['ca', 'rotate-root', '--ca-dir', caDir, '--root-dir', join(tmp.dir, 'newroot'), '--admin', cp.admin, '--reload-grace', '2s', '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    const first = JSON.parse(r.stdout) as { phase: string; applied: string; waitingFor: string; laggingProxies: Array<{ spiffeId: string }> };
    // Right after the new root is written, no sidecar holds the two-root bundle yet.
    expect(first.applied).to.equal('none');
    expect(first.waitingFor).to.match(/connected sidecar\(s\) to ACK bundle version/);
    expect(first.laggingProxies.map((p) => p.spiffeId)).to.include(`spiffe://${TD}/ns/shop/sa/gate`);

    const newRoot = readFileSync(join(tmp.dir, 'newroot', 'root.pem'), 'utf8').trim();
    const roots = (x: FakeSidecar): string[] => ((x.bodies.get('bundle')?.[0] as { rootsPem?: string[] } | undefined)?.rootsPem ?? []);
    let step = first;
    await waitFor(() => {
      const again = trellisSync(['ca', 'rotate-root', '--ca-dir', caDir, '--admin', cp.admin, '-o', 'json'], { env: cp.adminEnv });
      expect(again.status, again.stderr).to.equal(0);
      step = JSON.parse(again.stdout) as typeof first;
      return step.phase === 'renew';
    }, 'the rotation to switch once the sidecars ACKed', 30_000);
    // It could only switch after every connected sidecar held both roots.
    for (const x of sidecars) {
      expect(roots(x).length, 'two roots').to.equal(2);
      expect(roots(x).map((p) => p.trim())).to.include(newRoot);
    }
    await waitFor(async () => {
      await s.rotate();
      return s.creds!.chainPem.includes(readFileSync(join(caDir, 'intermediate.pem'), 'utf8').trim());
    }, 'a renewal from the intermediate under the new root', 20_000);
    const st = JSON.parse(trellisSync(['ca', 'status', '--ca-dir', caDir, '-o', 'json']).stdout) as { rootRotation: { phase: string; waitingFor: string } };
    expect(st.rootRotation.phase).to.equal('renew');
    expect(st.rootRotation.waitingFor).to.match(/expire|reload grace/);
  });
});
