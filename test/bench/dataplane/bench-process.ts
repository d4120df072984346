/** Child processes of the dataplane benchmark and what /proc says about them. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '@trellis/testkit';

/** Starts a child that prints one JSON line when ready; resolves with it. */
export function startJsonChild(cmd: string, args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, info: JSON.parse(out.slice(0, nl)) as Record<string, unknown> });
    });
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${args[0] ?? cmd} exited with ${code} before it was ready`)));
    child.stdin!.end(input ?? '');
  });
}

/**
 * The node arguments `trellis sidecar` re-executes itself with (the bounded
 * young generation of cli/bin/young-generation.js), so that a benchmark's
 * sidecar process has the memory a pod's has.
 */
export function sidecarNodeArgs(): string[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const yg = require(join(REPO_ROOT, 'cli', 'bin', 'young-generation.js')) as { youngGenerationReexec(argv: string[], execArgv: string[], nodeOptions: string | undefined, hasExecve: boolean): string[] | null };
  return yg.youngGenerationReexec(['sidecar'], [], process.env.NODE_OPTIONS, true) ?? [];
}

/** A process's resident set, MB (one decimal). */
export function rssMb(pid: number | undefined): number {
  if (!pid) return NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
}

/**
 * A process's resident memory by kind, MB (one decimal), from
 * /proc/PID/smaps_rollup: `rss` as VmRSS counts it; `file` the pages mapped
 * from files (the node binary's code and data above all: clean, shared by
 * every process that runs the same binary from the same image, and given
 * back by the kernel under pressure); `anon` the memory no other process can
 * share (V8's heap, malloc, buffers); `pss` each page divided among the
 * processes that map it.
 */
export function memoryMb(pid: number | undefined): { rss: number; file: number; anon: number; pss: number } {
  const none = { rss: NaN, file: NaN, anon: NaN, pss: NaN };
  if (!pid) return none;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return none;
  }
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  const mb = (k: number): number => Math.round((k / 1024) * 10) / 10;
  const rss = kb('Rss');
  const anon = kb('Anonymous');
  return { rss: mb(rss), file: mb(rss - anon), anon: mb(anon), pss: mb(kb('Pss')) };
}

/** CPU time a process has used in user space and in the kernel, in ms (from /proc, clock ticks of 10 ms). */
export function cpuTimes(pid: number | undefined): { user: number; sys: number } {
  if (!pid) return { user: NaN, sys: NaN };
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, sys: Number(fields[12]) * 10 };
}

/** The middle value (the upper one of an even count). */
export function median(xs: number[]): number {
  return [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
}

/** What a Node process of this runtime holds before any sidecar code: the floor under the sidecar's RSS (MB). */
export interface RuntimeFloor {
  /** An empty process. */
  readonly empty: number;
  /** With one TLS context (what any mTLS endpoint needs). */
  readonly tls_context: number;
  /** With a TLS context and node:http and node:http2 loaded (the discovery stream and the `/http` ports need both). */
  readonly tls_http: number;
}

const FLOOR_SCRIPT = `
const step = Number(process.argv[1]);
if (step >= 1) require('node:tls').createSecureContext({});
if (step >= 2) { require('node:http'); require('node:http2'); }
setTimeout(() => {
  const m = /VmRSS:\\s+(\\d+) kB/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'));
  process.stdout.write(String(m ? Number(m[1]) : NaN));
}, 500);
`;

/**
 * VmRSS of bare processes of the node binary the sidecar runs on, with the
 * sidecar's node arguments, after the same settling pause for each step:
 * the floor a Node sidecar cannot go below, reported beside its own RSS.
 */
export function runtimeFloorMb(): RuntimeFloor {
  const at = (step: number): number => {
    const r = spawnSync(process.execPath, [...sidecarNodeArgs(), '-e', FLOOR_SCRIPT, String(step)], { encoding: 'utf8', timeout: 10_000 });
    return Math.round((Number(r.stdout) / 1024) * 10) / 10;
  };
  return { empty: at(0), tls_context: at(1), tls_http: at(2) };
}
