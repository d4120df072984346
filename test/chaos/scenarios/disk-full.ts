/**
 * The control plane's CA dir on a 2 MiB tmpfs, filled to the last byte for
 * 10 s under traffic while both sidecars keep renewing (one-minute SVIDs):
 * renewals are refused with TRELLIS_CA_AUDIT_WRITE_FAILED and nothing is
 * handed out without its audit record; traffic keeps flowing on the
 * certificates in place; once space is freed the sidecars' own retries get
 * new SVIDs and the control plane is ready again, without a restart.
 */
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { mountTmpfs, TMPFS, trellisSync } from '@trellis/testkit';
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { SteadyLoad } from '../steady-load';
import { controlPlaneReadyz, logged, startStateMesh } from '../state-mesh';

function fill(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    const small = Buffer.alloc(512);
    try {
      for (;;) writeSync(fd, small);
    } catch {
      // full to the last block
    }
  } finally {
    closeSync(fd);
  }
}

export const diskFull: Scenario = {
  name: 'disk-full',
  summary: 'fill the file system of the control plane\'s CA dir (a 2 MiB tmpfs) for 10 s while sidecars renew every ~3 s under traffic',
  async run(): Promise<FaultRow> {
    const missing = TMPFS.missing();
    if (missing !== undefined) throw new Error(`needs ${TMPFS.name}: ${missing}`);
    const fs = mountTmpfs('2m');
    const mesh = await startStateMesh({ caDir: join(fs.dir, 'ca') }).catch((err) => {
      fs.unmount();
      throw err;
    });
    const load = new SteadyLoad(mesh.webToCart, { concurrency: 1 }).start();
    try {
      await sleep(3000);
      const cp = mesh.controlPlanes[0]!;
      const sidecars = [mesh.sidecars.web, mesh.sidecars.cart];
      const filler = join(fs.dir, 'filler');
      const cpMark = mesh.group.log(cp).length;
      const fullAt = Date.now();
      fill(filler);
      await sleep(10_000);
      const readyWhileFull = await controlPlaneReadyz(mesh.cpAdmin[0]!);
      const refusedRenewals = mesh.group.log(cp).slice(cpMark).split('\n').filter((l) => l.includes('"msg":"svid refused"') && l.includes('TRELLIS_CA_AUDIT_WRITE_FAILED')).length;
      const issuedWhileFull = logged(mesh, cp, 'svid issued', cpMark);
      rmSync(filler);
      const freedAt = Date.now();
      const afterMarks = sidecars.map((s) => mesh.group.log(s).length);
      let readyAt = 0;
      const [renewed, ready] = await Promise.all([
        until(() => sidecars.every((s, i) => logged(mesh, s, 'SVID installed', afterMarks[i]) > 0), 60_000, 50),
        until(async () => (await controlPlaneReadyz(mesh.cpAdmin[0]!)) === 200, 10_000, 50).then((ok) => ((readyAt = Date.now()), ok)),
      ]);
      const renewedAt = Date.now();
      await sleep(2000);
      const verify = trellisSync(['audit', 'verify', '--ca-dir', mesh.caDir, '-o', 'json']);
      const audit = JSON.parse(verify.stdout || '{}') as { ok?: boolean; records?: number; problem?: unknown };
      const counts = load.count(fullAt);
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: renewed ? renewedAt - freedAt : null,
        lost: audit.ok ? (counts.failed === 0 ? 'nothing: no request failed, no certificate went out without its audit record, no record torn' : `${counts.failed} requests`) : `the audit log does not verify: ${JSON.stringify(audit.problem)}`,
        details: { failureReasons: load.reasons(fullAt), fullForMs: freedAt - fullAt, issuancesRefusedWhileFull: refusedRenewals, svidsIssuedWhileFull: issuedWhileFull, readyzWhileFull: readyWhileFull, readyAgainMs: ready ? readyAt - freedAt : null, auditRecords: audit.records ?? null },
      };
    } finally {
      await load.stop();
      await mesh.stop();
      fs.unmount();
    }
  },
};
