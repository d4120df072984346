/** Runs the system `openssl` as an independent verifier of what we issue. */
import { spawnSync } from 'node:child_process';
import { OPENSSL } from './test-dependencies';

export interface OpensslResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `openssl ARGS...` and returns its exit status and output. */
export function openssl(args: string[], input?: string | Buffer): OpensslResult {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** True when an `openssl` binary can be run here (the OPENSSL dependency's probe; suites gate on OPENSSL). */
export function hasOpenssl(): boolean {
  return OPENSSL.missing() === undefined;
}
