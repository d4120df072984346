/**
 * Runs leader election for one identity on one Lease (see lease-decision.ts
 * for the rule). Every `retryPeriodMs` it reads the Lease and renews,
 * acquires or follows; writes are updates guarded by the resourceVersion it
 * read, so of two candidates racing for a free lease exactly one wins (the
 * other gets 409 and follows). A leader whose lease is still valid renews
 * without reading first: it updates the object its last write returned, and
 * only if that fails (409: someone else wrote) reads and decides again, as
 * client-go's fast path does; a renewal is one request, not two. A leader that cannot renew within
 * `renewDeadlineMs` stops leading before its lease can expire elsewhere.
 * On stop, a leader releases the lease (empty holder) so a successor need
 * not wait out the duration, as client-go's ReleaseOnCancel does.
 *
 * Reusable: the injector elects who patches caBundle with it, and the
 * control plane can elect its singleton work the same way.
 */
import type { Logger } from '@trellis/shared';
import type { KubeClient } from '../client/kube-client';
import { KubernetesError, KubernetesErrorCode } from '../errors/kubernetes-error';
import { decideLease, microTime, type LeaseRecord } from './lease-decision';

/** Settings of an election (client-go defaults: 15 s / 10 s / 2 s). */
export interface LeaderElectionOptions {
  namespace: string;
  /** The Lease name (one per singleton job). */
  name: string;
  /** This candidate, unique among replicas (e.g. the pod name plus a random suffix). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

/** Collaborators. */
export interface LeaderElectionDeps {
  client: KubeClient;
  logger: Logger;
  /** Called when this candidate becomes leader. */
  onStartedLeading?: () => void;
  /** Called when it stops being leader (lost the lease, or stopped). */
  onStoppedLeading?: () => void;
  now?: () => number;
}

interface LeaseObject {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseRecord;
}

/** A running election. */
export class LeaderElector {
  private leader = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastRecordJson = '';
  private observedAtMs = 0;
  private lastRenewMs = 0;
  /** The Lease as our last successful write returned it (the leader's renewals start from it). */
  private held: LeaseObject | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => number;

  constructor(
    private readonly opts: LeaderElectionOptions,
    private readonly deps: LeaderElectionDeps,
  ) {
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.now = deps.now ?? Date.now;
    if (!(this.renewDeadlineMs < this.leaseDurationMs && this.retryPeriodMs < this.renewDeadlineMs)) {
      throw new KubernetesError(KubernetesErrorCode.BAD_CONFIG, 'leader election needs retryPeriod < renewDeadline < leaseDuration', { ...opts });
    }
  }

  /** True while this candidate holds the lease. */
  isLeader(): boolean {
    return this.leader;
  }

  /** Starts campaigning (the first attempt runs at once). */
  start(): void {
    this.schedule(0);
  }

  /** Stops; a leader releases the lease first. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    if (this.leader) {
      try {
        const lease = await this.read();
        if (lease?.spec?.holderIdentity === this.opts.identity) {
          await this.deps.client.replace(this.path(), { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.now()) } });
        }
      } catch (err) {
        this.deps.logger.warn('lease not released; a successor waits out its duration', { lease: this.opts.name, error: err });
      }
      this.setLeader(false);
    }
  }

  private path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/leases/${encodeURIComponent(this.opts.name)}`;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.attempt().finally(() => this.schedule(this.retryPeriodMs));
    }, ms);
    this.timer.unref();
  }

  private async read(): Promise<LeaseObject | null> {
    return (await this.deps.client.getOrNull(this.path())) as LeaseObject | null;
  }

  private setLeader(v: boolean): void {
    if (v === this.leader) return;
    this.leader = v;
    this.deps.logger.info(v ? 'became leader' : 'stopped leading', { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
    try {
      (v ? this.deps.onStartedLeading : this.deps.onStoppedLeading)?.();
    } catch (err) {
      this.deps.logger.error('leadership callback failed', { error: err });
    }
  }

  /** The leader's renewal of the Lease it wrote last, without a read; false when that fails (the caller reads and decides). */
  private async renewHeld(now: number): Promise<boolean> {
    const held = this.held;
    if (!this.leader || !held?.spec || now - this.lastRenewMs >= this.leaseDurationMs) return false;
    try {
      this.wrote((await this.deps.client.replace(this.path(), { ...held, spec: { ...held.spec, renewTime: microTime(now) } })) as LeaseObject, now);
      return true;
    } catch (err) {
      if (!(err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT)) this.deps.logger.warn('lease renewal failed; reading the lease', { lease: this.opts.name, error: err });
      this.held = null;
      return false;
    }
  }

  private wrote(lease: LeaseObject, now: number): void {
    this.held = lease;
    this.lastRecordJson = JSON.stringify(lease.spec ?? null);
    this.observedAtMs = now;
    this.lastRenewMs = now;
    this.setLeader(true);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const now = this.now();
    if (await this.renewHeld(now)) return;
    try {
      const lease = await this.read();
      const json = JSON.stringify(lease?.spec ?? null);
      if (json !== this.lastRecordJson) {
        this.lastRecordJson = json;
        this.observedAtMs = now;
      }
      const d = decideLease({ record: lease?.spec ?? null, identity: this.opts.identity, nowMs: now, observedAtMs: this.observedAtMs, leaseDurationMs: this.leaseDurationMs });
      if (d.action === 'follow') {
        this.setLeader(false);
        return;
      }
      const spec: LeaseRecord = {
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
        acquireTime: d.action === 'acquire' ? microTime(now) : (lease?.spec?.acquireTime ?? microTime(now)),
        renewTime: microTime(now),
        leaseTransitions: d.action === 'acquire' ? d.leaseTransitions : (lease?.spec?.leaseTransitions ?? 0),
      };
      const written = !lease
        ? await this.deps.client.create(`/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/leases`, {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.opts.name, namespace: this.opts.namespace },
            spec: { ...spec, leaseTransitions: 0 },
          })
        : await this.deps.client.replace(this.path(), { ...lease, spec });
      this.wrote(written as LeaseObject, now);
    } catch (err) {
      // 409: another candidate wrote first (it leads); anything else: we could not renew.
      if (!(err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT)) {
        this.deps.logger.warn('lease update failed', { lease: this.opts.name, error: err });
      }
      if (this.leader && (this.now() - this.lastRenewMs >= this.renewDeadlineMs || (err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT))) {
        this.setLeader(false);
      }
    }
  }
}
