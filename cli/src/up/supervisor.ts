/**
 * Runs the child processes of a local mesh: starts each, prefixes its output
 * with its name, restarts it when it dies unexpectedly (with backoff), and on
 * stop terminates every child and waits, escalating to SIGKILL, so nothing is
 * left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '@trellis/shared';

export interface ChildSpec {
  /** Short name used as the log prefix, e.g. `payments/sidecar`. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Restart when it exits while the supervisor is running (default true). */
  restart?: boolean;
  /** Runs before every (re)start, e.g. to issue a fresh single-use token. */
  prepare?: () => void;
}

export interface SupervisorDeps {
  logger: Logger;
  /** Where prefixed child output goes. */
  output: NodeJS.WritableStream;
  /** Called for every child output line (after prefixing), e.g. to find a readiness line. */
  onLine?: (name: string, line: string) => void;
  /** Milliseconds to wait after SIGTERM before SIGKILL. */
  killAfterMs?: number;
}

interface Running {
  spec: ChildSpec;
  child: ChildProcess | undefined;
  restarts: number;
  timer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
}

/** Supervises a set of named child processes. */
export class Supervisor {
  private readonly children = new Map<string, Running>();
  private stopping = false;

  constructor(private readonly deps: SupervisorDeps) {}

  /** Starts `spec`; its output is prefixed with `[name]`. */
  start(spec: ChildSpec): void {
    const entry: Running = { spec, child: undefined, restarts: 0, timer: undefined, exited: Promise.resolve() };
    this.children.set(spec.name, entry);
    this.launch(entry);
  }

  /** Names and restart counts of every supervised child. */
  status(): Array<{ name: string; pid: number | undefined; restarts: number; running: boolean }> {
    return [...this.children.values()].map((e) => ({
      name: e.spec.name,
      pid: e.child?.pid,
      restarts: e.restarts,
      running: e.child !== undefined && e.child.exitCode === null && e.child.signalCode === null,
    }));
  }

  /** Kills the child `name` (SIGKILL), as a crash would; the supervisor restarts it. */
  crash(name: string): void {
    this.children.get(name)?.child?.kill('SIGKILL');
  }

  /** Stops every child: SIGTERM, then SIGKILL after the grace period. Resolves when all have exited. */
  async stop(): Promise<void> {
    this.stopping = true;
    const killAfter = this.deps.killAfterMs ?? 5000;
    const waits: Promise<void>[] = [];
    for (const e of this.children.values()) {
      if (e.timer) clearTimeout(e.timer);
      const child = e.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      child.kill('SIGTERM');
      const hard = setTimeout(() => child.kill('SIGKILL'), killAfter);
      waits.push(e.exited.then(() => clearTimeout(hard)));
    }
    await Promise.all(waits);
  }

  private launch(entry: Running): void {
    const { spec } = entry;
    try {
      spec.prepare?.();
    } catch (err) {
      this.deps.logger.error('child preparation failed', { child: spec.name, err });
    }
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    entry.child = child;
    entry.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const prefix = `[${spec.name}] `;
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.deps.output.write(prefix + line + '\n');
        this.deps.onLine?.(spec.name, line);
      });
    }
    child.once('error', (err) => this.deps.logger.error('child failed to start', { child: spec.name, err }));
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      const restart = spec.restart ?? true;
      this.deps.logger.warn('child exited', { child: spec.name, code, signal, restarting: restart });
      if (!restart) return;
      entry.restarts += 1;
      const delay = Math.min(10_000, 250 * 2 ** Math.min(entry.restarts - 1, 6));
      entry.timer = setTimeout(() => {
        if (this.stopping) return;
        this.deps.logger.info('restarting child', { child: spec.name, restarts: entry.restarts });
        this.launch(entry);
      }, delay);
    });
  }
}
