/**
 * Installs the redirect rules for real with `iptables-restore`. The command
 * runner comes in through `deps` so the decision code stays free of processes.
 */
import { spawn } from 'node:child_process';
import { InjectorError } from '../errors/injector-error';
import { jumpDeletions, renderRestore, type IpFamily, type RedirectPlan } from './redirect-rules';

/** Result of one command. */
export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with optional stdin; never throws for a non-zero exit. */
export type CommandRunner = (program: string, args: readonly string[], input?: string) => Promise<RunResult>;

/** Collaborators of `applyRedirect`. */
export interface ApplyRedirectDeps {
  run: CommandRunner;
  /**
   * Families to program (default [4]). Include 6 whenever the pod has IPv6:
   * otherwise a peer could dial the app port over IPv6 and bypass the sidecar.
   */
  families?: readonly IpFamily[];
}

/**
 * Removes earlier Trellis jumps, then loads the rules with
 * `iptables-restore --noflush`. Throws TRELLIS_INJECTOR_IPTABLES_FAILED with
 * iptables' own stderr when the load fails (the init container then exits
 * non-zero and the pod does not start: fail closed, no unprotected app port).
 */
export async function applyRedirect(plan: RedirectPlan, deps: ApplyRedirectDeps): Promise<void> {
  for (const family of deps.families ?? [4]) {
    const iptables = family === 4 ? 'iptables' : 'ip6tables';
    const restore = `${iptables}-restore`;
    for (const del of jumpDeletions()) {
      for (let i = 0; i < 16; i++) {
        const r = await deps.run(iptables, ['-w', ...del]);
        if (r.status !== 0) break;
      }
    }
    const r = await deps.run(restore, ['-w', '--noflush'], renderRestore(plan, family));
    if (r.status !== 0) {
      throw new InjectorError('TRELLIS_INJECTOR_IPTABLES_FAILED', `${restore} failed (exit ${r.status}): ${r.stderr.trim().split('\n')[0] ?? ''}`, { program: restore, status: r.status, family });
    }
  }
}

/** A CommandRunner over child_process.spawn. A missing program yields status 127. */
export const spawnRunner: CommandRunner = (program, args, input) =>
  new Promise((resolve) => {
    const child = spawn(program, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ status: 127, stdout, stderr: stderr + err.message }));
    child.on('close', (code) => resolve({ status: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
