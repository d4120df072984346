/**
 * The control plane's work on a Kubernetes API server, and who does it: the
 * policy CRD source (every replica reads and serves), the trust-bundle
 * ConfigMap publisher, and the Lease `trellis-control-plane` that elects the
 * one replica that writes (policy status, Events, ConfigMaps), with
 * @trellis/kubernetes's elector (client-go's rules: 15 s lease, 10 s renew
 * deadline, released on stop). Wiring for `trellis control-plane`; each part
 * is optional.
 */
import { LeaderElector, type KubeClient } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import { CrdPolicySource } from './crd-policy-source';
import { RootCertPublisher } from './root-cert-publisher';

/** The Lease the control plane's replicas elect their writer with. */
export const CONTROL_PLANE_LEASE = 'trellis-control-plane';

/** Settings. */
export interface ControlPlaneControllersOptions {
  /** Where the Lease lives: the control plane's own namespace. */
  leaseNamespace: string;
  /** This replica in the Lease (unique among replicas). */
  identity: string;
  leaseDurationMs?: number;
  rootNamespace: string;
  allowInvalidPolicies: boolean;
  /** How often discovery is asked again for policy CRDs (default 30 s). */
  rediscoverMs?: number;
}

/** The controllers of one replica. */
export class ControlPlaneControllers {
  /** The API server's policies, once `startPolicies()` ran. */
  policies: CrdPolicySource | null = null;
  /** The ConfigMap publisher, once `startRootCerts()` ran. */
  rootCerts: RootCertPublisher | null = null;
  private readonly elector: LeaderElector;
  private electing = false;

  constructor(
    private readonly opts: ControlPlaneControllersOptions,
    private readonly deps: { client: KubeClient; logger: Logger },
  ) {
    const ms = opts.leaseDurationMs ?? 15_000;
    this.elector = new LeaderElector(
      { namespace: opts.leaseNamespace, name: CONTROL_PLANE_LEASE, identity: opts.identity, leaseDurationMs: ms, renewDeadlineMs: Math.round((ms * 2) / 3), retryPeriodMs: Math.round(ms / 7.5) },
      {
        client: deps.client,
        logger: deps.logger.child({ component: 'lease' }),
        onStartedLeading: () => this.leadershipChanged(true),
        onStoppedLeading: () => this.leadershipChanged(false),
      },
    );
  }

  /** True while this replica writes. */
  isLeader(): boolean {
    return this.elector.isLeader();
  }

  /** Starts reading policies from the API server; combine `policies` with the policy dir. */
  startPolicies(): CrdPolicySource {
    this.policies = new CrdPolicySource(
      { rootNamespace: this.opts.rootNamespace, allowInvalidAtStart: this.opts.allowInvalidPolicies, rediscoverMs: this.opts.rediscoverMs },
      { client: this.deps.client, logger: this.deps.logger.child({ component: 'policy-crds' }), isLeader: () => this.isLeader() },
    );
    this.policies.start();
    return this.policies;
  }

  /** Starts keeping `trellis-ca-root-cert` current with `roots()`; call `rootsChanged()` when they change. */
  startRootCerts(roots: () => readonly string[]): RootCertPublisher {
    this.rootCerts = new RootCertPublisher({ client: this.deps.client, logger: this.deps.logger.child({ component: 'root-cert' }), isLeader: () => this.isLeader(), roots });
    this.rootCerts.start();
    return this.rootCerts;
  }

  /** The trust bundle changed. */
  rootsChanged(): void {
    this.rootCerts?.rootsChanged();
  }

  /** Starts campaigning for the Lease (after the parts are started, so the new leader's sweep sees them). */
  elect(): void {
    if (this.electing) return;
    this.electing = true;
    this.elector.start();
  }

  /** Releases the Lease (a successor takes over at once) and stops every part. */
  async stop(): Promise<void> {
    await this.elector.stop();
    await Promise.all([this.policies?.stop(), this.rootCerts?.stop()]);
  }

  private leadershipChanged(leading: boolean): void {
    this.policies?.leadershipChanged(leading);
    this.rootCerts?.leadershipChanged(leading);
  }
}
