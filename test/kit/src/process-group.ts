/**
 * The `trellis` processes one real-process test file starts: each spawned
 * through the real binary with its stderr kept (the structured log, bounded),
 * the last lines of every log printed when a test fails, and all of them
 * killed at the end.
 */
import type { ChildProcess } from 'node:child_process';
import { trellisSpawn } from './cli-runner';

export class ProcessGroup {
  private readonly procs: ChildProcess[] = [];
  private readonly logs = new Map<ChildProcess, string>();

  /** `cwd` for every process; each log keeps its last `maxLogChars` characters (all of it by default). */
  constructor(
    private readonly cwd: string,
    private readonly maxLogChars = Infinity,
  ) {}

  /** Starts `trellis ARGS...` (with `env` in place of the inherited environment when given). */
  spawn(args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
    const p = trellisSpawn(args, { cwd: this.cwd, ...(env ? { env } : {}) });
    this.logs.set(p, '');
    p.stderr!.setEncoding('utf8').on('data', (d: string) => this.logs.set(p, (this.logs.get(p)! + d).slice(-this.maxLogChars)));
    p.stdout!.resume();
    this.procs.push(p);
    return p;
  }

  /** What `p` has written to stderr so far. */
  log(p: ChildProcess): string {
    return this.logs.get(p) ?? '';
  }

  /** Prints the last `lines` lines of every process's log to stderr (for a failed test). */
  dumpLogs(lines = 15): void {
    for (const [p, text] of this.logs) process.stderr.write(`--- ${p.spawnargs.slice(2, 4).join(' ')} (last lines)\n${text.split('\n').slice(-lines).join('\n')}\n`);
  }

  /** SIGKILLs every process still running. */
  killAll(): void {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL');
  }

  /** SIGKILLs every process still running and resolves once all have exited (nothing they do can land after). */
  async killAllAndWait(): Promise<void> {
    const running = this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
    const exited = running.map((p) => new Promise<void>((r) => p.once('exit', () => r())));
    this.killAll();
    await Promise.all(exited);
  }
}
