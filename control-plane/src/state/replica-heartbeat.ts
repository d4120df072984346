/**
 * Keeps this replica's report current in the shared document of reports
 * (replica-report.ts) and follows the other replicas': looks at its own
 * sidecars often (every `checkMs`) and publishes when what it would report
 * changed (endpoints, sidecars, bundle ACKs), at once after a session joins
 * or leaves, and on a heartbeat otherwise; re-reads the document as often
 * (a file) or as it is pushed (a ConfigMap watch), and hands the live others
 * to the control plane. A replica that
 * stops cleanly withdraws its report; one that dies is dropped once its
 * heartbeat is stale (at once on the same machine, by its pid).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { canonicalJson, type EndpointsResource, type Logger } from '@trellis/shared';
import type { ObservedProxy } from '../lifecycle/root-rotation';
import { bundleAckCounts, liveReplicas, withoutReport, withReport, type ReplicaReport, type ReplicaSet } from './replica-report';
import type { SharedDocument } from './shared-document';
import type { StorageHealth } from './storage-health';

/** Settings of a heartbeat. */
export interface ReplicaHeartbeatOptions {
  /** This replica's id (default host:pid:random). */
  replica?: string;
  /** How often the report is rewritten (default 2 s). */
  heartbeatMs?: number;
  /** How often this replica's own report is recomputed, and a file document re-read (default 500 ms). */
  checkMs?: number;
  /** Re-read the document on every check (a file); a watched document is pushed (false). Default true. */
  poll?: boolean;
  /** A report older than this is from a replica that is gone (default 3 heartbeats). */
  staleMs?: number;
  /** Publish endpoints (false on Kubernetes, where EndpointSlices are the registry). Default true. */
  endpoints?: boolean;
}

/** Collaborators. */
export interface ReplicaHeartbeatDeps {
  doc: SharedDocument<ReplicaSet>;
  /** This replica's endpoints and sidecars now. */
  local(): { endpoints: ReadonlyMap<string, EndpointsResource>; proxies: readonly ObservedProxy[] };
  /** Called with the live other replicas whenever what they report changes. */
  onOthers(others: readonly ReplicaReport[]): void;
  logger: Logger;
  health?: StorageHealth;
  nowMs?: () => number;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** This replica's heartbeat. */
export class ReplicaHeartbeat {
  readonly replica: string;
  private readonly host = hostname();
  private readonly heartbeatMs: number;
  private readonly staleMs: number;
  private timers: NodeJS.Timeout[] = [];
  private debounce: NodeJS.Timeout | null = null;
  private lastOthers = '';
  /** What was last published, without its time, and when. */
  private lastReport = '';
  private lastPublishMs = 0;
  /** A publish is waiting to run: another adds nothing (it reads the state when it runs). */
  private queued = false;
  private others: readonly ReplicaReport[] = [];
  private publishing: Promise<void> = Promise.resolve();
  private failed = false;
  private unsubscribe: () => void = () => undefined;
  private stopped = false;

  constructor(
    private readonly opts: ReplicaHeartbeatOptions,
    private readonly deps: ReplicaHeartbeatDeps,
  ) {
    this.replica = opts.replica ?? `${this.host}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.heartbeatMs = opts.heartbeatMs ?? 2000;
    this.staleMs = opts.staleMs ?? this.heartbeatMs * 3;
  }

  /** Publishes now, then keeps publishing and following. */
  start(): void {
    this.unsubscribe = this.deps.doc.subscribe(() => this.follow());
    void this.publish();
    const t = setInterval(() => {
      if (this.opts.poll !== false) void this.deps.doc.refresh().catch(() => undefined);
      this.follow();
      if (this.now() - this.lastPublishMs >= this.heartbeatMs || this.content(this.report()) !== this.lastReport) void this.publish();
    }, this.opts.checkMs ?? 500);
    t.unref();
    this.timers.push(t);
  }

  /** This replica's endpoints or sidecars changed: publish soon. */
  changed(): void {
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.publish();
    }, 100);
    this.debounce.unref();
  }

  /** The live other replicas, as last seen. */
  liveOthers(): readonly ReplicaReport[] {
    return this.others;
  }

  /** Stops and withdraws this replica's report (its sidecars are leaving with it). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.debounce) clearTimeout(this.debounce);
    this.unsubscribe();
    await this.publishing;
    try {
      await this.deps.doc.update((set) => withoutReport(set, this.replica));
    } catch (err) {
      this.deps.logger.warn('replica report not withdrawn; the others drop it once its heartbeat is stale', { error: err });
    }
  }

  private now(): number {
    return (this.deps.nowMs ?? Date.now)();
  }

  private report(): ReplicaReport {
    const { endpoints, proxies } = this.deps.local();
    return Object.freeze({
      replica: this.replica,
      host: this.host,
      pid: process.pid,
      at: new Date(this.now()).toISOString(),
      endpoints: this.opts.endpoints === false ? [] : [...endpoints.values()],
      sidecars: proxies.length,
      bundleAcks: bundleAckCounts(proxies),
    });
  }

  private content(r: ReplicaReport): string {
    return canonicalJson({ endpoints: r.endpoints, sidecars: r.sidecars, bundleAcks: r.bundleAcks });
  }

  private publish(): Promise<void> {
    if (this.stopped || this.queued) return this.publishing;
    this.queued = true;
    this.publishing = this.publishing.then(async () => {
      this.queued = false;
      if (this.stopped) return;
      const report = this.report();
      this.lastPublishMs = this.now();
      try {
        await this.deps.doc.update((set) => withReport(set, report, this.now(), Math.max(this.staleMs * 10, 60_000)));
        this.lastReport = this.content(report);
        this.deps.health?.record('replica-report', null);
        if (this.failed) this.deps.logger.info('replica report written again', { replica: this.replica });
        this.failed = false;
      } catch (err) {
        this.deps.health?.record('replica-report', err as Error);
        if (!this.failed) this.deps.logger.error('replica report not written; the other replicas will drop this one once its heartbeat is stale', { replica: this.replica, error: err });
        this.failed = true;
      }
      this.follow();
    });
    return this.publishing;
  }

  /** Recomputes the live others; tells the control plane when what they report changed. */
  private follow(): void {
    if (this.stopped) return;
    const others = liveReplicas(this.deps.doc.current(), this.replica, this.now(), { staleMs: this.staleMs, host: this.host, pidAlive });
    const key = canonicalJson(others.map((r) => ({ replica: r.replica, endpoints: r.endpoints, sidecars: r.sidecars, bundleAcks: r.bundleAcks })));
    this.others = others;
    if (key === this.lastOthers) return;
    this.lastOthers = key;
    this.deps.onOthers(others);
  }
}
