/**
 * The control plane's policy directory: loads every `*.yaml`, `*.yml` and
 * `*.json` file, watches the directory (fs.watch with a debounce, plus a
 * periodic rescan because fs.watch misses events on some file systems and
 * volume mounts), and publishes one immutable PolicySet.
 *
 * First load fails closed (policy-set-publisher.ts): until one scan read the
 * directory and every file validated, nothing is served and the control
 * plane is not ready, or a rejected file holding a workload's only ALLOW
 * would leave it allow-all (`allowInvalidAtStart` opts out). After that, a
 * file whose new content has any error is rejected whole and its previous
 * good policies stay in force (logged, counted through `deps.metrics`, shown
 * by `status()` as /debug/policies). Deleting a file removes its policies.
 *
 * A policy without `metadata.creationTimestamp` is dated by when its file was
 * first seen: the file's mtime at the first scan that found it, remembered for
 * the life of the store so later edits do not change its conflict order.
 *
 * A `change` event fires only when the effective content changed (an edited
 * comment does not wake the discovery streams).
 *
 * A file is never half-read: new content is taken only once the file has
 * been still for `settleMs` (policy-file-reader.ts); until then the last good
 * content stays in force. A writer that pauses longer than that in the
 * middle of a write defeats this: rename into place instead (docs/policy.md).
 *
 * What it publishes, and the first-load and duplicate rules, are the one
 * model both stores share (policy-set-publisher.ts); this file is the
 * directory side: scanning, watching, per-file last good content.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { DEFAULT_ROOT_NAMESPACE, formatIssue, parsePolicyFile, POLICY_CODES, type Logger, type Policy, type PolicyIssue, type PolicySet } from '@trellis/shared';
import { nodePolicyFs, readSettled, type PolicyFs } from './policy-file-reader';
import { PolicySetPublisher } from './policy-set-publisher';

/** Counters the store reports; wire them to prom-client in the control plane. */
export interface PolicyStoreMetrics {
  /** A file's new content was rejected (its last good version stays). */
  fileRejected(file: string): void;
  /** A scan finished; `changed` when a new PolicySet was published. */
  reloaded?(changed: boolean): void;
}

/** Collaborators of the store. */
export interface PolicyStoreDeps {
  logger: Logger;
  /** Clock for status times. */
  now: () => Date;
  fs?: PolicyFs;
  metrics?: PolicyStoreMetrics;
  /** The wall clock that file mtimes are compared with (default Date.now). */
  wallClockMs?: () => number;
  /** Timers, injectable so tests can drive them. */
  timers?: { setTimeout: typeof setTimeout; clearTimeout: typeof clearTimeout; setInterval: typeof setInterval; clearInterval: typeof clearInterval };
}

/** Options of the store. */
export interface PolicyStoreOptions {
  dir: string;
  /** Default `trellis-system`. */
  rootNamespace?: string;
  /** Quiet time after a watch event before rescanning; default 100 ms (editors write in several steps). */
  debounceMs?: number;
  /** Periodic rescan; default 5000 ms; 0 disables. */
  rescanIntervalMs?: number;
  /** Serve the valid files even when some fail validation at first load (default false: serve nothing until all validate). */
  allowInvalidAtStart?: boolean;
  /** How long a changed file must be still before its new content is read (default 100 ms). */
  settleMs?: number;
}

/** One file in `status()`. */
export interface PolicyFileStatus {
  readonly file: string;
  /** `ok`: current content in force; `rejected`: the last good content (if any) is in force instead. */
  readonly state: 'ok' | 'rejected';
  /** Policies in force from this file, as `Kind namespace/name`. */
  readonly policies: readonly string[];
  readonly firstSeen: string;
  readonly lastGoodAt: string | null;
  readonly rejectedAt: string | null;
  /** Errors of the rejected content and warnings of the content in force, formatted `file:line:col: ...`. */
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

/** What /debug/policies shows. */
export interface PolicyStoreStatus {
  readonly dir: string;
  readonly rootNamespace: string;
  /** sha256 of the effective content; changes exactly when a `change` event fires. */
  readonly version: string;
  readonly lastScanAt: string | null;
  /** Why the directory itself could not be read, if it could not. */
  readonly dirError: string | null;
  readonly watching: boolean;
  /** False until a first load in which every file validated (or allowInvalidAtStart): no policy is served. */
  readonly servable: boolean;
  /** Policies defined in two files (the first file, by name, wins). */
  readonly duplicates: readonly string[];
  readonly counts: { readonly peerAuthentications: number; readonly authorizationPolicies: number };
  readonly files: readonly PolicyFileStatus[];
}

interface FileState {
  text: string | null;
  firstSeen: Date;
  good: Policy[];
  goodWarnings: PolicyIssue[];
  lastGoodAt: Date | null;
  rejected: { at: Date; errors: PolicyIssue[] } | null;
}

const POLICY_FILE = /\.(ya?ml|json)$/;

/** The policy directory, loaded and watched. Create, `await start()`, read `current()`, `close()` at shutdown. */
export class PolicyStore extends EventEmitter<{ change: [PolicySet]; rejected: [string, readonly PolicyIssue[]] }> {
  private readonly fs: PolicyFs;
  private readonly root: string;
  private readonly files = new Map<string, FileState>();
  private readonly published: PolicySetPublisher;
  private lastScanAt: Date | null = null;
  private dirError: string | null = null;
  private watcher: { close(): void } | null = null;
  private debounce: ReturnType<typeof setTimeout> | null = null;
  private interval: ReturnType<typeof setInterval> | null = null;
  private scanning: Promise<boolean> | null = null;
  private rescanRequested = false;
  private closed = false;
  private started = false;
  private watchError: string | null = null;

  constructor(
    private readonly opts: PolicyStoreOptions,
    private readonly deps: PolicyStoreDeps,
  ) {
    super();
    this.fs = deps.fs ?? nodePolicyFs;
    this.root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.published = new PolicySetPublisher(
      deps,
      {
        updated: 'policies updated',
        duplicate: 'policy defined in two files; the first file wins',
        allValid: 'every policy file validated: policies are served',
        servedAnyway: 'serving policies although some failed validation at first load (allowInvalidAtStart): a workload whose only ALLOW policy is in a rejected file is allowed everything',
      },
      { dir: opts.dir },
    );
  }

  /** Loads the directory once, then starts watching. Resolves after the first load. */
  async start(): Promise<void> {
    this.started = true;
    await this.reload();
    if (this.closed) return;
    const every = this.opts.rescanIntervalMs ?? 5000;
    if (every > 0) {
      this.interval = this.timers().setInterval(() => this.backgroundReload(), every);
      (this.interval as { unref?: () => void }).unref?.();
    }
  }

  /** (Re)establishes the directory watch; retried after every scan, so a directory created later gets watched too. */
  private ensureWatch(): void {
    if (!this.started || this.closed || this.watcher) return;
    try {
      this.watcher = this.fs.watch(this.opts.dir, () => this.schedule(), (err) => {
        this.deps.logger.warn('policy dir watch failed; relying on the periodic rescan', { dir: this.opts.dir, error: err });
        this.watcher?.close();
        this.watcher = null;
      });
      this.watchError = null;
    } catch (err) {
      const msg = (err as Error).message;
      if (this.watchError !== msg) this.deps.logger.warn('cannot watch the policy dir; relying on the periodic rescan', { dir: this.opts.dir, error: err });
      this.watchError = msg;
    }
  }

  /** The PolicySet in force (frozen; replaced whole on change). */
  current(): PolicySet {
    return this.published.current();
  }

  /**
   * True once a scan read the directory and every file validated (or any scan
   * finished, with `allowInvalidAtStart`); stays true, since later rejections
   * keep their file's last good content. Until then nothing may be served.
   */
  servable(): boolean {
    return this.published.servable();
  }

  /** Content version of `current()`. */
  version(): string {
    return this.published.version();
  }

  /** Calls `listener` with each new PolicySet; returns an unsubscribe function. */
  subscribe(listener: (set: PolicySet) => void): () => void {
    this.on('change', listener);
    return () => this.off('change', listener);
  }

  /**
   * Rescans now. Resolves true when the effective content changed. Concurrent
   * calls share one scan and queue at most one more, so no edit is missed.
   */
  async reload(): Promise<boolean> {
    if (this.scanning) {
      this.rescanRequested = true;
      return this.scanning;
    }
    this.scanning = this.scan().finally(() => {
      this.scanning = null;
    });
    const changed = await this.scanning;
    if (this.rescanRequested && !this.closed) {
      this.rescanRequested = false;
      return (await this.reload()) || changed;
    }
    return changed;
  }

  /** Everything an operator needs to see why a policy is or is not in force. */
  status(): PolicyStoreStatus {
    const files = [...this.files.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const set = this.published.current();
    return {
      dir: this.opts.dir,
      rootNamespace: this.root,
      version: this.published.version(),
      lastScanAt: this.lastScanAt?.toISOString() ?? null,
      dirError: this.dirError,
      watching: this.watcher !== null,
      servable: this.published.servable(),
      duplicates: this.published.duplicates(),
      counts: { peerAuthentications: set.peerAuthentications.length, authorizationPolicies: set.authorizationPolicies.length },
      files: files.map(([file, s]) => ({
        file,
        state: s.rejected ? 'rejected' : 'ok',
        policies: s.good.map((p) => `${p.kind} ${p.metadata.namespace}/${p.metadata.name}`),
        firstSeen: s.firstSeen.toISOString(),
        lastGoodAt: s.lastGoodAt?.toISOString() ?? null,
        rejectedAt: s.rejected?.at.toISOString() ?? null,
        errors: (s.rejected?.errors ?? []).map(formatIssue),
        warnings: s.goodWarnings.map(formatIssue),
      })),
    };
  }

  /** Stops watching and timers; the last PolicySet stays readable. */
  close(): void {
    this.closed = true;
    const timers = this.timers();
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) timers.clearTimeout(this.debounce);
    if (this.interval) timers.clearInterval(this.interval);
    this.debounce = null;
    this.interval = null;
    this.removeAllListeners();
  }

  private schedule(): void {
    if (this.closed) return;
    const timers = this.timers();
    if (this.debounce) timers.clearTimeout(this.debounce);
    this.debounce = timers.setTimeout(() => {
      this.debounce = null;
      this.backgroundReload();
    }, this.opts.debounceMs ?? 100);
  }

  /** A reload from a timer: an unexpected failure is logged, never an unhandled rejection that would stop the process. */
  private backgroundReload(): void {
    this.reload().catch((err: unknown) => this.deps.logger.error('policy dir scan failed; the policies in force are unchanged', { dir: this.opts.dir, error: err }));
  }

  private timers(): NonNullable<PolicyStoreDeps['timers']> {
    return this.deps.timers ?? { setTimeout, clearTimeout, setInterval, clearInterval };
  }

  private async scan(): Promise<boolean> {
    const log = this.deps.logger;
    // A store that becomes servable on a later scan tells its listeners even when the content is unchanged.
    const firstScan = this.lastScanAt === null;
    let names: string[];
    try {
      names = (await this.fs.readdir(this.opts.dir)).filter((n) => POLICY_FILE.test(n) && !n.startsWith('.')).sort();
      if (this.dirError) log.info('policy dir readable again', { dir: this.opts.dir });
      this.dirError = null;
    } catch (err) {
      // An unreadable directory keeps every policy in force: failing open to "no policies" would drop DENYs.
      const msg = `${this.opts.dir}: ${(err as Error).message}`;
      if (this.dirError !== msg) log.error('policy dir unreadable; keeping the policies in force', { dir: this.opts.dir, error: err });
      this.dirError = msg;
      this.lastScanAt = this.deps.now();
      const nowServable = this.markComplete(this.opts.allowInvalidAtStart === true) && !firstScan;
      if (nowServable) this.emit('change', this.current());
      this.deps.metrics?.reloaded?.(nowServable);
      return nowServable;
    }
    for (const gone of [...this.files.keys()].filter((f) => !names.includes(f))) {
      this.files.delete(gone);
      log.info('policy file removed; its policies are withdrawn', { file: join(this.opts.dir, gone) });
    }
    for (const name of names) await this.scanFile(name);
    this.lastScanAt = this.deps.now();
    // Servable before publishing, so listeners of this very change already see it.
    const allValid = [...this.files.values()].every((f) => f.rejected === null);
    const nowServable = this.markComplete(allValid || this.opts.allowInvalidAtStart === true);
    let changed = this.publish();
    if (nowServable && !changed && !firstScan) {
      this.emit('change', this.current());
      changed = true;
    }
    this.ensureWatch();
    this.deps.metrics?.reloaded?.(changed);
    return changed;
  }

  /** Records the first complete load (policy-set-publisher.ts); true when this call made the store servable. */
  private markComplete(ok: boolean): boolean {
    const rejected = [...this.files.entries()].filter(([, f]) => f.rejected !== null).map(([n]) => n);
    return this.published.markComplete(ok, { rejected, dirError: this.dirError }, { files: this.files.size });
  }

  private async scanFile(name: string): Promise<void> {
    const path = join(this.opts.dir, name);
    const log = this.deps.logger;
    let prev = this.files.get(name);
    let text: string;
    try {
      if (!prev) {
        const firstSeen = await this.fs.mtime(path);
        prev = { text: null, firstSeen, good: [], goodWarnings: [], lastGoodAt: null, rejected: null };
        this.files.set(name, prev);
      }
      text = await this.fs.readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // Gone between readdir and read (an editor's rename): the next scan settles it.
        if (prev && prev.text === null) this.files.delete(name);
        return;
      }
      const issue: PolicyIssue = { severity: 'error', code: POLICY_CODES.FILE, file: path, documentIndex: -1, line: 1, column: 1, path: '', message: `cannot read: ${(err as Error).message}` };
      if (!prev) return;
      prev.text = null; // re-parse once it is readable again, even if unchanged
      const same = prev.rejected?.errors.length === 1 && prev.rejected.errors[0]?.message === issue.message;
      if (!same) this.reject(name, prev, [issue], path); // report a lasting read error once, not on every rescan
      return;
    }
    if (text === prev.text) return;
    let settled: string | null;
    try {
      settled = await this.settledText(path, text);
    } catch {
      // Gone or unreadable while settling (an editor's rename): the next scan settles it.
      this.schedule();
      return;
    }
    if (settled === null) {
      // Still being written after several settle windows: keep what is in force, look again soon.
      log.warn('policy file keeps changing; its last good content stays in force until it is still', { file: path, settleMs: this.opts.settleMs ?? 100 });
      this.schedule();
      return;
    }
    text = settled;
    if (text === prev.text) return;
    prev.text = text;
    let parsed: ReturnType<typeof parsePolicyFile>;
    try {
      parsed = parsePolicyFile(text, path, { firstSeen: prev.firstSeen, rootNamespace: this.root });
    } catch (err) {
      // The parser reports bad input as issues; this is a bug guard, and it still fails closed (last good stays).
      this.reject(name, prev, [{ severity: 'error', code: POLICY_CODES.YAML, file: path, documentIndex: -1, line: 1, column: 1, path: '', message: `cannot parse: ${(err as Error).message}` }], path);
      return;
    }
    const errors = parsed.issues.filter((i) => i.severity === 'error');
    if (errors.length > 0) {
      this.reject(name, prev, errors, path);
      return;
    }
    const warnings = parsed.issues.filter((i) => i.severity === 'warning');
    for (const w of warnings) log.warn('policy warning', { file: path, issue: formatIssue(w), code: w.code });
    if (prev.rejected) log.info('policy file accepted again', { file: path });
    prev.good = parsed.policies;
    prev.goodWarnings = warnings;
    prev.lastGoodAt = this.deps.now();
    prev.rejected = null;
  }

  /** The content of `path` once it is settled (policy-file-reader.ts), or null when it kept changing. */
  private settledText(path: string, first: string): Promise<string | null> {
    return readSettled(this.fs, path, first, { settleMs: this.opts.settleMs ?? 100, wallClockMs: this.deps.wallClockMs ?? Date.now, setTimeout: this.timers().setTimeout });
  }

  private reject(name: string, state: FileState, errors: PolicyIssue[], path: string): void {
    state.rejected = { at: this.deps.now(), errors };
    this.deps.logger.error(state.lastGoodAt ? 'policy file rejected; its last good version stays in force' : 'policy file rejected; it has no good version yet', {
      file: path,
      code: errors[0]?.code,
      errors: errors.length,
      issues: errors.slice(0, 20).map(formatIssue),
    });
    this.deps.metrics?.fileRejected(name);
    this.emit('rejected', name, errors);
  }

  /** Builds the set from every file's good policies; a kind/namespace/name defined by two files is kept from the first file (sorted by name) only. */
  private publish(): boolean {
    const files = [...this.files.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
    const changed = this.published.publish(files.flatMap(([name, state]) => state.good.map((policy) => ({ origin: name, policy }))));
    if (changed) this.emit('change', this.current());
    return changed;
  }
}
