/**
 * The control plane is frozen (SIGSTOP) past every sidecar's certificate
 * expiry, then resumed. The sidecars must fail closed at expiry (no request
 * served on an expired identity, open connections included), and recover by
 * themselves once it is back: a sidecar whose join token is spent exits 75
 * and `trellis up` restarts it with a fresh one.
 */
import { httpGet } from '@trellis/testkit';
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { startLocalMesh } from '../local-mesh';
import { SteadyLoad } from '../steady-load';

const ready = async (port: number): Promise<boolean> => (await httpGet(port, '/ready', { timeoutMs: 1000 })).status === 200;

export const controlPlaneFrozenPastExpiry: Scenario = {
  name: 'control-plane-frozen-past-expiry',
  summary: 'SIGSTOP the control plane until both sidecars\' 1-minute certificates expired (+10 s), then SIGCONT',
  async run(): Promise<FaultRow> {
    const mesh = await startLocalMesh();
    const load = new SteadyLoad(mesh.frontendToPayments).start();
    try {
      if (!(await until(() => load.recoveredAt(0) !== null, 30_000))) throw new Error('no traffic before the fault');
      const cp = mesh.pid('control-plane');
      if (!cp) throw new Error('no control plane process');
      const frozenAt = Date.now();
      process.kill(cp, 'SIGSTOP');
      let expiredAt = 0;
      try {
        const both = await until(async () => !(await ready(mesh.admin.frontend)) && !(await ready(mesh.admin.payments)), 75_000, 200);
        if (!both) throw new Error('the sidecars never failed closed');
        expiredAt = Date.now();
        await sleep(10_000);
      } finally {
        process.kill(cp, 'SIGCONT');
      }
      const resumedAt = Date.now();
      // Recovered: both sidecars ready again (a valid identity) and traffic flowing. Traffic alone is not
      // enough: keep-alive connections opened before the expiry would carry it on an expired identity.
      const readyAgain = await until(async () => (await ready(mesh.admin.frontend)) && (await ready(mesh.admin.payments)), 60_000, 100);
      const readyAt = readyAgain ? Date.now() : null;
      const back = readyAt !== null && (await until(() => load.recoveredAt(readyAt) !== null, 30_000));
      await sleep(3000);
      const recovered = back ? Math.max(readyAt!, load.recoveredAt(resumedAt)!) : null;
      const end = Date.now();
      const all = load.count(frozenAt, end);
      const restarts = (mesh.output().match(/no credential left; restarting it at once/g) ?? []).length;
      return {
        fault: this.name,
        injected: this.summary,
        requests: all,
        timeToRecoverMs: recovered === null ? null : recovered - resumedAt,
        lost: `requests from the expiry to the recovery; ${load.count(expiredAt + 500, resumedAt).sent - load.count(expiredAt + 500, resumedAt).failed} served on an expired identity`,
        details: {
          frozenMs: resumedAt - frozenAt,
          bothExpiredAfterMs: expiredAt - frozenAt,
          bothReadyAgainAfterResumeMs: readyAt === null ? null : readyAt - resumedAt,
          servedAfterExpiry: load.count(expiredAt + 500, resumedAt).sent - load.count(expiredAt + 500, resumedAt).failed,
          failedWhileFrozen: load.count(frozenAt, resumedAt).failed,
          failedAfterResume: load.count(resumedAt, end).failed,
          sidecarsRestartedWithFreshToken: restarts,
          failureReasons: load.reasons(frozenAt, end),
        },
      };
    } finally {
      await load.stop();
      await mesh.stop();
    }
  },
};
