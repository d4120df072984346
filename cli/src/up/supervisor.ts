/**
 * Runs the child processes of a local mesh: starts each, writes its output to
 * its own log file (when a log dir is given) and shows the terminal only its
 * warnings and errors (every line, prefixed with its name, when verbose),
 * restarts it when it dies unexpectedly, and on stop terminates every child
 * and waits, escalating to SIGKILL, so nothing is left behind; should this
 * process exit without stop() (a second Ctrl-C), every child is SIGKILLed as
 * it goes.
 *
 * Restarts back off as kubelet's do: 500 ms doubling to 10 s (with jitter),
 * and the backoff starts over once the child has been ready for
 * STABLE_AFTER_MS. A child that exits with NO_CREDENTIAL_EXIT_CODE (a
 * sidecar whose single-use join token is spent) is restarted at once, its
 * `prepare` issuing it a fresh token; doing so again before it was ever
 * ready counts as a crash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { backoffDelayMs, NO_CREDENTIAL_EXIT_CODE, type BackoffOptions, type Logger } from '@trellis/shared';
import { terminalLine } from './terminal-log';

/** Restart delays: 500 ms doubling to 10 s, equal jitter (the shared backoff). */
export const RESTART_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 500, maxMs: 10_000 });
/**
 * How long a child must have been ready before its restart backoff starts
 * over. kubelet waits 10 minutes with a 5-minute cap, twice its cap; ours is
 * twice our 10 s cap. A local mesh's children are ready within seconds, so a
 * child that stayed ready 20 s is not crashing at start, and its next crash
 * is restarted after 0.5 s rather than 10.
 */
export const STABLE_AFTER_MS = 20_000;
/** How often a running child's readiness is probed until it counts as stable. */
const READY_PROBE_MS = 1000;

/**
 * The delay before restarting a child that exited: none for a sidecar out of
 * credentials on its first such exit since it was last ready (a fresh token
 * fixes it), else the backoff for its `crashes`-th crash in a row (1-based).
 * Pure.
 */
export function restartDelayMs(exit: { code: number | null; crashes: number; freshCredentialRestarts: number }, random: number, backoff: BackoffOptions = RESTART_BACKOFF): number {
  if (exit.code === NO_CREDENTIAL_EXIT_CODE && exit.freshCredentialRestarts === 0) return 0;
  return backoffDelayMs(Math.max(0, exit.crashes - 1), backoff, random);
}

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
  /** Whether the running child is ready (probed every second until it is stable); absent: ready while running. */
  ready?: () => Promise<boolean>;
  /**
   * On stop(), signalled only once every other child has exited: the control
   * plane, so that its sidecars say goodbye to it instead of each seeing it go
   * (and warning that it did).
   */
  stopLast?: boolean;
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
  /** How long a child must be ready before its backoff starts over (default STABLE_AFTER_MS). */
  stableAfterMs?: number;
  /** Restart backoff (default RESTART_BACKOFF). */
  backoff?: BackoffOptions;
  /** [0, 1) for the backoff's jitter; default Math.random. */
  random?: () => number;
}

interface Running {
  spec: ChildSpec;
  child: ChildProcess | undefined;
  /** Restarts in all. */
  restarts: number;
  /** Crashes since the child was last stable: the backoff's exponent. */
  crashes: number;
  /** Restarts at once for want of credentials since the child was last ready. */
  freshCredentialRestarts: number;
  /** Since when the running child has been ready (epoch ms), or null. */
  readySince: number | null;
  /** True once it has been ready for stableAfterMs (the backoff then starts over). */
  stable: boolean;
  timer: NodeJS.Timeout | undefined;
  probe: NodeJS.Timeout | undefined;
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
  /** SIGKILLs every child if this process exits without stop() (process.exit on a second signal). */
  private readonly killOnExit = (): void => {
    for (const e of this.children.values()) if (e.child && e.child.exitCode === null && e.child.signalCode === null) e.child.kill('SIGKILL');
  };

  constructor(private readonly deps: SupervisorDeps) {}

  /** Starts `spec`; its output is prefixed with `[name]`. */
  start(spec: ChildSpec): void {
    let log: WriteStream | undefined;
    if (this.deps.logDir !== undefined) {
      mkdirSync(this.deps.logDir, { recursive: true });
      log = createWriteStream(join(this.deps.logDir, childLogFile(spec.name)), { flags: 'a' });
      log.on('error', (err) => this.deps.logger.error('cannot write the child log file', { child: spec.name, err }));
    }
    const entry: Running = { spec, child: undefined, restarts: 0, crashes: 0, freshCredentialRestarts: 0, readySince: null, stable: false, timer: undefined, probe: undefined, exited: Promise.resolve(), log };
    if (this.children.size === 0) process.on('exit', this.killOnExit);
    this.children.set(spec.name, entry);
    this.launch(entry);
  }

  /** Names, restart counts and backoff state of every supervised child. */
  status(): Array<{ name: string; pid: number | undefined; restarts: number; crashes: number; stable: boolean; running: boolean }> {
    return [...this.children.values()].map((e) => ({
      name: e.spec.name,
      pid: e.child?.pid,
      restarts: e.restarts,
      crashes: e.crashes,
      stable: e.stable,
      running: e.child !== undefined && e.child.exitCode === null && e.child.signalCode === null,
    }));
  }

  /** Kills the child `name` (SIGKILL), as a crash would; the supervisor restarts it. */
  crash(name: string): void {
    this.children.get(name)?.child?.kill('SIGKILL');
  }

  /**
   * Stops every child: SIGTERM, then SIGKILL after the grace period; those
   * marked `stopLast` once the others have exited. Resolves when all have.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const killAfter = this.deps.killAfterMs ?? 5000;
    for (const e of this.children.values()) {
      if (e.timer) clearTimeout(e.timer);
      if (e.probe) clearTimeout(e.probe);
    }
    const all = [...this.children.values()];
    for (const phase of [all.filter((e) => !e.spec.stopLast), all.filter((e) => e.spec.stopLast)]) {
      const waits: Promise<void>[] = [];
      for (const e of phase) {
        const child = e.child;
        if (!child || child.exitCode !== null || child.signalCode !== null) continue;
        child.kill('SIGTERM');
        const hard = setTimeout(() => child.kill('SIGKILL'), killAfter);
        waits.push(e.exited.then(() => clearTimeout(hard)));
      }
      await Promise.all(waits);
    }
    process.off('exit', this.killOnExit);
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
    entry.readySince = null;
    entry.stable = false;
    entry.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.probeReady(entry, child);
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
      if (entry.probe) clearTimeout(entry.probe);
      entry.probe = undefined;
      if (this.stopping) return;
      const restart = spec.restart ?? true;
      const outOfCredentials = code === NO_CREDENTIAL_EXIT_CODE;
      if (!restart) {
        this.deps.logger.warn('child exited', { child: spec.name, code, signal, restarting: false, ...this.logField(spec) });
        return;
      }
      entry.restarts += 1;
      const atOnce = outOfCredentials && entry.freshCredentialRestarts === 0;
      if (!atOnce) entry.crashes += 1;
      const delay = restartDelayMs({ code, crashes: entry.crashes, freshCredentialRestarts: entry.freshCredentialRestarts }, (this.deps.random ?? Math.random)(), this.deps.backoff);
      if (atOnce) entry.freshCredentialRestarts += 1;
      this.deps.logger.warn(atOnce ? 'child has no credential left; restarting it at once with a fresh one' : 'child exited', {
        child: spec.name, code, signal, restarting: true, restartInMs: delay, ...this.logField(spec),
      });
      entry.timer = setTimeout(() => {
        if (this.stopping) return;
        this.deps.logger.info('restarting child', { child: spec.name, restarts: entry.restarts });
        this.launch(entry);
      }, delay);
    });
  }

  private logField(spec: ChildSpec): { log?: string } {
    return this.deps.logDir !== undefined ? { log: join(this.deps.logDir, childLogFile(spec.name)) } : {};
  }

  /**
   * Probes the running child's readiness every second until it has been
   * ready for stableAfterMs; then its crash backoff starts over. Readiness
   * also allows another restart at once for want of credentials.
   */
  private probeReady(entry: Running, child: ChildProcess): void {
    const stableAfter = this.deps.stableAfterMs ?? STABLE_AFTER_MS;
    const tick = async (): Promise<void> => {
      entry.probe = undefined;
      if (this.stopping || entry.child !== child || child.exitCode !== null || child.signalCode !== null) return;
      const ready = entry.spec.ready ? await entry.spec.ready().catch(() => false) : true;
      if (entry.child !== child || child.exitCode !== null || child.signalCode !== null) return;
      const now = Date.now();
      if (!ready) entry.readySince = null;
      else {
        entry.readySince ??= now;
        entry.freshCredentialRestarts = 0;
        if (now - entry.readySince >= stableAfter) {
          entry.stable = true;
          entry.crashes = 0;
          return;
        }
      }
      entry.probe = setTimeout(() => void tick(), Math.min(READY_PROBE_MS, stableAfter));
      entry.probe.unref();
    };
    entry.probe = setTimeout(() => void tick(), Math.min(READY_PROBE_MS, stableAfter));
    entry.probe.unref();
  }
}
