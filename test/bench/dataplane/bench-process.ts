/** Child processes of the dataplane benchmark and what /proc says about them. */
import { spawn, type ChildProcess } from 'node:child_process';
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
