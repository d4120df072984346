/**
 * `npm run chaos [-- NAME ...]`: runs bounded fault scenarios against real
 * Trellis processes on loopback (each a few minutes at most) and prints one
 * JSON line per scenario as it ends, then the whole fault table as one JSON
 * document: each fault, requests sent and failed, time to recover, what was
 * lost. Exits 1 if a scenario could not run. Nothing leaves loopback. A
 * scenario is a `Scenario` (fault-row.ts) in scenarios/, listed below: the
 * recovery and drain faults run a `trellis up` mesh (local-mesh.ts), the
 * shared-state faults control-plane replicas on one CA dir (state-mesh.ts);
 * both measure with one request generator (steady-load.ts).
 */
import type { FaultRow, Scenario } from './fault-row';
import { controlPlaneFrozenPastExpiry } from './scenarios/control-plane-frozen-past-expiry';
import { controlPlaneRestart } from './scenarios/control-plane-restart';
import { crashLoop } from './scenarios/crash-loop';
import { diskFull } from './scenarios/disk-full';
import { drainWithSecondInstance } from './scenarios/drain-with-second-instance';
import { leaderKilledMidRotation } from './scenarios/leader-killed-mid-rotation';
import { replicaKilled } from './scenarios/replica-killed';
import { signalAfterReady } from './scenarios/signal-after-ready';
import { streamRenewals } from './scenarios/stream-renewals';

const SCENARIOS: readonly Scenario[] = [
  drainWithSecondInstance,
  controlPlaneRestart,
  signalAfterReady,
  crashLoop,
  streamRenewals,
  controlPlaneFrozenPastExpiry,
  diskFull,
  replicaKilled,
  leaderKilledMidRotation,
];

async function main(): Promise<number> {
  const names = process.argv.slice(2);
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length > 0) {
    process.stderr.write(`chaos: unknown scenario ${unknown.join(', ')} (have: ${SCENARIOS.map((s) => s.name).join(', ')})\n`);
    return 2;
  }
  const chosen = names.length > 0 ? SCENARIOS.filter((s) => names.includes(s.name)) : SCENARIOS;
  const table: Array<FaultRow | { fault: string; error: string }> = [];
  let broken = 0;
  for (const s of chosen) {
    const started = Date.now();
    try {
      const row = await s.run();
      table.push(row);
      process.stdout.write(JSON.stringify({ ...row, tookMs: Date.now() - started }) + '\n');
    } catch (err) {
      broken++;
      const row = { fault: s.name, error: (err as Error).message };
      table.push(row);
      process.stdout.write(JSON.stringify(row) + '\n');
    }
  }
  process.stdout.write(JSON.stringify({ faultTable: table }, null, 2) + '\n');
  return broken > 0 ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`chaos: ${(err as Error).message}\n`);
  process.exit(1);
});
