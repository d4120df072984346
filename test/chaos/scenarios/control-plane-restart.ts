/**
 * The control plane is killed (SIGKILL) and `trellis up` restarts it. The
 * caller must never be pushed an endpoint list without its upstream, and
 * no request may fail: the data plane does not need the control plane.
 */
import { httpGet } from '@trellis/testkit';
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { childLog, startLocalMesh } from '../local-mesh';
import { SteadyLoad } from '../steady-load';

export const controlPlaneRestart: Scenario = {
  name: 'control-plane-restart',
  summary: 'SIGKILL the control plane under traffic; trellis up restarts it',
  async run(): Promise<FaultRow> {
    const mesh = await startLocalMesh();
    const load = new SteadyLoad(mesh.frontendToPayments).start();
    try {
      if (!(await until(() => load.recoveredAt(0) !== null, 30_000))) throw new Error('no traffic before the fault');
      const cp = mesh.pid('control-plane');
      if (!cp) throw new Error('no control plane process');
      const logBefore = childLog(mesh, 'frontend/sidecar').length;
      const killedAt = Date.now();
      process.kill(cp, 'SIGKILL');
      // Watch the caller's endpoints through its admin page while the control plane comes back.
      let polls = 0;
      let withoutUpstream = 0;
      const watchUntil = Date.now() + 15_000;
      while (Date.now() < watchUntil) {
        const dump = JSON.parse((await httpGet(mesh.admin.frontend, '/config_dump', { timeoutMs: 1000 }).catch(() => ({ body: '{}' }))).body) as { endpoints?: Record<string, { addresses: string[] }> };
        polls++;
        if ((dump.endpoints?.['payments']?.addresses.length ?? 0) === 0) withoutUpstream++;
        await sleep(50);
      }
      const restarted = mesh.pid('control-plane');
      const applied = childLog(mesh, 'frontend/sidecar').slice(logBefore).split('\n').filter((l) => l.includes('"msg":"endpoints applied"'));
      const partialPushes = applied.filter((l) => !l.includes('"payments"')).length;
      const counts = load.count(killedAt);
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: counts.failed === 0 ? 0 : load.recoveredAt(load.lastFailureAt(killedAt) ?? killedAt) === null ? null : load.recoveredAt(load.lastFailureAt(killedAt)!)! - killedAt,
        lost: partialPushes === 0 && counts.failed === 0 ? 'nothing' : `${counts.failed} requests; ${partialPushes} endpoint lists without payments pushed to frontend`,
        details: { controlPlaneBack: restarted !== undefined && restarted !== cp, endpointPolls: polls, pollsWithoutUpstream: withoutUpstream, endpointPushesAfterRestart: applied.length, pushesWithoutUpstream: partialPushes, failureReasons: load.reasons(killedAt) },
      };
    } finally {
      await load.stop();
      await mesh.stop();
    }
  },
};
