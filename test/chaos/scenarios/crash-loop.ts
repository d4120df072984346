/**
 * The payments sidecar is killed as soon as it is back, four times (a crash
 * loop: the restart delay grows), then left running until it has been ready
 * for the supervisor's stable time, then killed once more: that restart must
 * come after the shortest delay again, not the longest.
 */
import { httpGet } from '@trellis/testkit';
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { startLocalMesh } from '../local-mesh';
import { SteadyLoad } from '../steady-load';

const ready = async (port: number): Promise<boolean> => (await httpGet(port, '/ready', { timeoutMs: 500 })).status === 200;

export const crashLoop: Scenario = {
  name: 'crash-loop-then-stable',
  summary: 'SIGKILL the payments sidecar 4 times as soon as it is back, then once more after 25 s of readiness',
  async run(): Promise<FaultRow> {
    const mesh = await startLocalMesh();
    const load = new SteadyLoad(mesh.frontendToPayments).start();
    const downtimes: number[] = [];
    const failedPerCrash: number[] = [];
    try {
      if (!(await until(() => load.recoveredAt(0) !== null, 30_000))) throw new Error('no traffic before the fault');
      const t0 = Date.now();
      const crash = async (): Promise<void> => {
        const pid = mesh.pid('payments/sidecar');
        if (!pid) throw new Error('no payments sidecar');
        const at = Date.now();
        process.kill(pid, 'SIGKILL');
        await until(async () => mesh.pid('payments/sidecar') !== pid && (await ready(mesh.admin.payments)), 60_000, 50);
        downtimes.push(Date.now() - at);
        await until(() => load.recoveredAt(at) !== null, 20_000);
        failedPerCrash.push(load.count(at, Date.now()).failed);
      };
      for (let i = 0; i < 4; i++) await crash();
      await sleep(25_000);
      await crash();
      const counts = load.count(t0);
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: downtimes[downtimes.length - 1] ?? null,
        lost: `requests while payments was down: ${failedPerCrash.join(', ')} per crash`,
        details: { downtimeMsPerCrash: downtimes, failedPerCrash, failureReasons: load.reasons(t0) },
      };
    } finally {
      await load.stop();
      await mesh.stop();
    }
  },
};
