/**
 * Two control-plane replicas on one CA dir, web's sidecar on replica A and
 * cart's on replica B (the split the issue saw: 896 of 896 requests failed
 * for 9 s). Under traffic from web to cart by service name, replica B is
 * killed (SIGKILL): cart's sidecar fails over to A, A drops B's report
 * (its pid is gone), and web keeps reaching cart.
 */
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { SteadyLoad } from '../steady-load';
import { startStateMesh } from '../state-mesh';

export const replicaKilled: Scenario = {
  name: 'replica-killed',
  summary: 'two replicas on one CA dir, web on A and cart on B; SIGKILL replica B under traffic',
  async run(): Promise<FaultRow> {
    const mesh = await startStateMesh({ replicas: 2 });
    const load = new SteadyLoad(mesh.webToCart, { concurrency: 1 }).start();
    try {
      await sleep(3000);
      const before = load.count(0);
      const killedAt = Date.now();
      mesh.controlPlanes[1]!.kill('SIGKILL');
      const a = mesh.controlPlanes[0]!;
      const failedOver = await until(() => mesh.group.log(a).split('\n').some((l) => l.includes('"msg":"stream authenticated"') && l.includes('/sa/cart"')), 30_000, 50);
      const failedOverAt = Date.now();
      await sleep(5000);
      const counts = load.count(killedAt);
      const last = load.lastFailureAt(killedAt);
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: counts.failed === 0 ? 0 : last === null ? null : last - killedAt,
        lost: counts.failed === 0 ? 'nothing' : `${counts.failed} requests`,
        details: { failureReasons: load.reasons(killedAt), requestsBeforeTheKill: before, cartFailedOverToAMs: failedOver ? failedOverAt - killedAt : null },
      };
    } finally {
      await load.stop();
      await mesh.stop();
    }
  },
};
