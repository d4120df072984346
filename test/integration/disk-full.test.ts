/**
 * The control plane on a full disk: its CA dir on a real 1 MiB tmpfs, filled
 * to the last byte while sidecars renew and join. Issuance fails with
 * TRELLIS_CA_AUDIT_WRITE_FAILED and hands out nothing, `trellis ca sign`
 * prints no certificate, a join token whose use could not be recorded is not
 * spent, a revocation is refused and the previous list stays, /readyz and
 * /metrics say why; nothing torn is left (`trellis audit verify`). Once space
 * is freed, everything resumes by itself: the sidecars' own retries get
 * their SVIDs and the control plane is ready again.
 */
import { expect } from 'chai';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, mountTmpfs, skipUnless, TMPFS, trellisSync } from '@trellis/testkit';
import { adminGet, adminRaw, FakeSidecar, initCa, joinToken, metricValue, startControlPlaneProcess, TD, waitFor, type ControlPlaneProcess } from './control-plane-harness';
import { buildWorkloadCsr } from '@trellis/shared';
import { generateKeyPairSync } from 'node:crypto';

/** Writes zeros to `file` until the file system refuses (ENOSPC); returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096);
  let total = 0;
  try {
    for (;;) total += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return total;
}

describe('the control plane on a full disk (a real tmpfs)', function () {
  this.timeout(60_000);
  let fs: { dir: string; unmount(): void } | null = null;
  const tmp = makeTmpDir('trellis-disk-full-');
  let caDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  before(async function () {
    skipUnless(this, TMPFS);
    fs = mountTmpfs('1m');
    caDir = join(fs.dir, 'ca');
    initCa(caDir);
    mkdirSync(join(tmp.dir, 'policies'));
    cp = await startControlPlaneProcess(caDir, join(tmp.dir, 'policies'));
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    await cp?.stop('SIGKILL');
    fs?.unmount();
    tmp.cleanup();
  });

  it('Should refuse to issue while the disk is full, hand out nothing torn, say why, and resume by itself once space is back', async () => {
    const id = `spiffe://${TD}/ns/shop/sa/renewer`;
    const renewer = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'shop' });
    const token = joinToken(caDir, id, ['--uses', '5']);
    const newcomerToken = joinToken(caDir, `spiffe://${TD}/ns/shop/sa/newcomer`, ['--uses', '1']);
    sidecars.push(renewer);
    renewer.start();
    await renewer.rotate();
    const revocationsBefore = (() => {
      try {
        return readFileSync(join(caDir, 'revocations.json'), 'utf8');
      } catch {
        return null;
      }
    })();

    const filler = join(fs!.dir, 'filler');
    fill(filler);
    const fullAt = Date.now();

    // A renewal: refused with the code, no certificate; the sidecar keeps retrying on its own backoff.
    const renewal = renewer.rotate();
    await waitFor(() => renewer.ends.some((e) => e.serverCode === 'TRELLIS_CA_AUDIT_WRITE_FAILED'), 'the renewal to be refused for its audit record');
    // A newcomer with a single-use token: its use cannot be recorded (or its SVID issued), so it is not spent.
    const newcomer = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: `spiffe://${TD}/ns/shop/sa/newcomer`, token: () => newcomerToken, namespace: 'shop' });
    sidecars.push(newcomer);
    newcomer.start();
    const joined = newcomer.rotate();
    await waitFor(() => newcomer.ends.some((e) => e.serverCode === 'TRELLIS_CP_JOIN_TOKEN_STORE' || e.serverCode === 'TRELLIS_CA_AUDIT_WRITE_FAILED'), 'the newcomer to be refused for want of space');
    const used = join(caDir, 'join-tokens', 'used');
    for (const f of readdirSync(used)) expect(statSync(join(used, f)).size, `use record ${f}`).to.be.greaterThan(0);

    // Not ready, and why; the metric says which store.
    const ready = await adminGet(cp, '/readyz');
    expect(ready.status).to.equal(503);
    expect((JSON.parse(ready.body) as { reasons: string[] }).reasons.join('\n')).to.match(/audit.*ENOSPC/);
    expect(await metricValue(cp, 'trellis_state_writable', 'store="audit"')).to.equal(0);
    expect(await metricValue(cp, 'trellis_state_write_failures_total', 'store="audit",reason="ENOSPC"')).to.be.greaterThan(0);

    // trellis ca sign prints no certificate without its audit record.
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csrFile = join(tmp.dir, 'cli.csr');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(csrFile, buildWorkloadCsr(key.privateKey, key.publicKey.export({ type: 'spki', format: 'der' }) as Buffer, `spiffe://${TD}/ns/shop/sa/cli`));
    const sign = trellisSync(['ca', 'sign', '--dir', caDir, '--csr', csrFile, '--spiffe-id', `spiffe://${TD}/ns/shop/sa/cli`]);
    expect(sign.status).to.equal(1);
    expect(sign.stdout).to.not.contain('BEGIN CERTIFICATE');
    expect(sign.stderr).to.contain('TRELLIS_CA_AUDIT_WRITE_FAILED');

    // A revocation is refused with a code; the previous list stays.
    const revoke = await adminRaw(cp, '/lifecycle/revoke', JSON.stringify({ spiffeId: `spiffe://${TD}/ns/shop/sa/someone` }));
    expect(revoke.status).to.equal(503);
    expect(revoke.body.error?.code).to.equal('TRELLIS_CP_STATE_WRITE_FAILED');
    const revocationsNow = (() => {
      try {
        return readFileSync(join(caDir, 'revocations.json'), 'utf8');
      } catch {
        return null;
      }
    })();
    expect(revocationsNow).to.equal(revocationsBefore);

    // Nothing torn: every record complete and chained.
    const verify = trellisSync(['audit', 'verify', '--ca-dir', caDir, '-o', 'json']);
    expect(verify.status, verify.stderr).to.equal(0);
    const recordsWhileFull = (JSON.parse(verify.stdout) as { records: number }).records;

    // Space comes back: no restart, no operator; the sidecars' retries succeed.
    rmSync(filler);
    const freedAt = Date.now();
    const leaf = await renewal;
    const renewedAt = Date.now();
    expect(leaf.serialNumber).to.be.a('string');
    await joined;
    const joinedAt = Date.now();
    await waitFor(async () => (await adminGet(cp, '/readyz')).status === 200, 'readyz 200 again', 5000);
    const readyAt = Date.now();
    const after = JSON.parse(trellisSync(['audit', 'verify', '--ca-dir', caDir, '-o', 'json']).stdout) as { ok: boolean; records: number };
    expect(after.ok).to.equal(true);
    expect(after.records).to.be.greaterThan(recordsWhileFull);
    const refused = [...renewer.ends, ...newcomer.ends].filter((e) => e.serverCode !== null).length;
    process.stdout.write(`      (disk full ${freedAt - fullAt} ms; ${refused} stream(s) refused meanwhile; after freeing: renewal ${renewedAt - freedAt} ms, newcomer ${joinedAt - freedAt} ms, ready ${readyAt - freedAt} ms)\n`);
  });
});
