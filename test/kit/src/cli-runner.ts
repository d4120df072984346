/**
 * Runs the real `trellis` binary as a child process, as a user would.
 * In-process runs (runCli) are for speed; this is for exit codes, stderr and signals.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { join } from 'node:path';

/** Absolute path of the repository root (test/kit/dist/src -> root). */
export const REPO_ROOT = join(__dirname, '..', '..', '..', '..');
/** The `trellis` entry point. */
export const TRELLIS_BIN = join(REPO_ROOT, 'cli', 'bin', 'trellis.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `trellis ARGS...` to completion. */
export function trellisSync(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [TRELLIS_BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
  });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `trellis ARGS...` in the background; the caller must stop it. */
export function trellisSpawn(args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, [TRELLIS_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}
