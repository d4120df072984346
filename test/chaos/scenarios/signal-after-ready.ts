/**
 * `trellis up` gets one SIGTERM the moment it says the mesh is running,
 * three times: it must exit every time, leaving no child behind.
 */
import { spawnSync } from 'node:child_process';
import { type FaultRow, type Scenario } from '../fault-row';
import { startLocalMesh } from '../local-mesh';

export const signalAfterReady: Scenario = {
  name: 'signal-the-moment-it-is-ready',
  summary: 'SIGTERM trellis up the moment it prints "is running", 3 times',
  async run(): Promise<FaultRow> {
    const tries: Array<{ exitMs: number | null; code: number | null; childrenLeft: number }> = [];
    for (let i = 0; i < 3; i++) {
      const mesh = await startLocalMesh({ signalWhenRunning: 'SIGTERM' });
      // The signal went out in the turn "is running" arrived, just before this.
      const t = Date.now();
      const children = spawnSync('ps', ['-o', 'pid=', '--ppid', String(mesh.up.pid)], { encoding: 'utf8' }).stdout.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
      const exited = await Promise.race([
        new Promise<number | null>((r) => (mesh.up.exitCode !== null ? r(mesh.up.exitCode) : mesh.up.once('exit', (code) => r(code)))),
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000)),
      ]);
      const left = children.filter((pid) => {
        try {
          process.kill(pid, 0);
          return !spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout.includes('Z');
        } catch {
          return false;
        }
      });
      tries.push({ exitMs: exited === 'timeout' ? null : Date.now() - t, code: exited === 'timeout' ? null : exited, childrenLeft: left.length });
      if (exited === 'timeout') mesh.up.kill('SIGKILL');
      for (const pid of left) process.kill(pid, 'SIGKILL');
      await mesh.stop().catch(() => undefined);
    }
    const failed = tries.filter((t) => t.code !== 0 || t.childrenLeft > 0).length;
    return {
      fault: this.name,
      injected: this.summary,
      requests: { sent: tries.length, failed },
      timeToRecoverMs: null,
      lost: failed === 0 ? 'nothing' : `${failed} of ${tries.length} runs did not stop cleanly`,
      details: { tries },
    };
  },
};
