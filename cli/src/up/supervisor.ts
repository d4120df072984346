/**
 * Runs the child processes of a local mesh: starts each, writes its output to
 * its own log file (when a log dir is given) and shows the terminal only its
 * warnings and errors (every line, prefixed with its name, when verbose),
 * restarts it when it dies unexpectedly (with backoff), and on stop
 * terminates every child and waits, escalating to SIGKILL, so nothing is left
 * behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '@trellis/shared';
import { terminalLine } from './terminal-log';

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
  /** The terminal: warnings and errors of every child (every line, prefixed, when `verbose`). */
  output: NodeJS.WritableStream;
  /** Each child's whole output goes to `<logDir>/<name with / as ->.log`, appended across restarts. */
  logDir?: string;
  /** Interleave every child line on `output`, prefixed with `[name]` (the pre-log-file behaviour). */
  verbose?: boolean;
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
  log: WriteStream | undefined;
}

/** The log file name of a child: `payments/sidecar` → `payments-sidecar.log`. */
export function childLogFile(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.log`;
}

/** Supervises a set of named child processes. */
export class Supervisor {
  private readonly children = new Map<string, Running>();
  private stopping = false;

  constructor(private readonly deps: SupervisorDeps) {}

  /** Starts `spec`; its output is prefixed with `[name]`. */
  start(spec: ChildSpec): void {
    let log: WriteStream | undefined;
    if (this.deps.logDir !== undefined) {
      mkdirSync(this.deps.logDir, { recursive: true });
      log = createWriteStream(join(this.deps.logDir, childLogFile(spec.name)), { flags: 'a' });
      log.on('error', (err) => this.deps.logger.error('cannot write the child log file', { child: spec.name, err }));
    }
    const entry: Running = { spec, child: undefined, restarts: 0, timer: undefined, exited: Promise.resolve(), log };
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
    await Promise.all([...this.children.values()].map((e) => (e.log ? new Promise<void>((r) => e.log!.end(() => r())) : undefined)));
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
        entry.log?.write(line + '\n');
        if (this.deps.verbose || !entry.log) this.deps.output.write(prefix + line + '\n');
        else if (!this.stopping) {
          // While stopping, children warn that their peers went away: expected, and kept in the files only.
          const shown = terminalLine(spec.name, line);
          if (shown !== undefined) this.deps.output.write(shown + '\n');
        }
        this.deps.onLine?.(spec.name, line);
      });
    }
    child.once('error', (err) => this.deps.logger.error('child failed to start', { child: spec.name, err }));
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      const restart = spec.restart ?? true;
      this.deps.logger.warn('child exited', { child: spec.name, code, signal, restarting: restart, ...(this.deps.logDir !== undefined ? { log: join(this.deps.logDir, childLogFile(spec.name)) } : {}) });
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
