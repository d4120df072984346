/**
 * The sidecar's Prometheus metrics, in a registry of its own (no global
 * default registry, so several sidecars can live in one test process).
 * Byte counts are taken from the sockets when a connection closes, so the
 * hot path does no per-chunk accounting. Rendered by our own small
 * registry (metric-registry.ts) rather than prom-client, which cost the
 * sidecar ~12 MB resident; names, labels and HELP/TYPE lines are unchanged.
 */
import { UNAUTHENTICATED_PEER } from '@trellis/shared';
import { CallLedger } from './call-ledger';
import { Counter, Gauge, MetricRegistry } from './metric-registry';
import { registerProcessMetrics } from './process-metrics';

/** Traffic direction label. */
export type Direction = 'inbound' | 'outbound';

/** Every metric the sidecar exports, names prefixed `trellis_`. */
export class SidecarMetrics {
  readonly registry = new MetricRegistry();
  readonly connections: Counter<'direction'>;
  readonly activeConnections: Gauge<'direction'>;
  readonly bytes: Counter<'direction' | 'flow'>;
  readonly handshakes: Counter<'direction' | 'result' | 'group'>;
  readonly refusals: Counter<'direction' | 'reason'>;
  readonly rotations: Counter<'result'>;
  readonly certExpiry: Gauge;
  readonly controlPlaneConnected: Gauge;
  readonly ready: Gauge;
  readonly pendingHandshakes: Gauge;
  /** Calls allowed and refused per peer over the report window (the sidecar report's calls). */
  readonly calls: CallLedger;
  private readonly now: () => number;

  constructor(opts: {
    certExpirySeconds: () => number | undefined;
    ready: () => boolean;
    controlPlaneConnected?: () => boolean | undefined;
    processMetrics?: boolean;
    /** Read at scrape time: inbound connections accepted and not yet judged. */
    pendingHandshakes?: () => number;
    /** The clock of the call ledger (epoch ms). Default Date.now. */
    now?: () => number;
    calls?: CallLedger;
  }) {
    const registry = this.registry;
    this.now = opts.now ?? Date.now;
    this.calls = opts.calls ?? new CallLedger();
    this.connections = new Counter({ name: 'trellis_connections_total', help: 'Connections accepted, by direction', labelNames: ['direction'], registry });
    this.activeConnections = new Gauge({ name: 'trellis_connections_active', help: 'Connections open now, by direction', labelNames: ['direction'], registry });
    this.bytes = new Counter({ name: 'trellis_bytes_total', help: 'Bytes proxied, by direction and flow (rx: from the downstream peer, tx: to it)', labelNames: ['direction', 'flow'], registry });
    this.handshakes = new Counter({
      name: 'trellis_handshakes_total',
      help: 'TLS handshakes, by direction, result (ok, resumed, error) and the key-exchange group negotiated (unknown when none was)',
      labelNames: ['direction', 'result', 'group'],
      registry,
    });
    this.refusals = new Counter({ name: 'trellis_refusals_total', help: 'Connections or requests refused, by direction and reason', labelNames: ['direction', 'reason'], registry });
    this.rotations = new Counter({ name: 'trellis_certificate_rotations_total', help: 'SVID rotations, by result', labelNames: ['result'], registry });
    this.certExpiry = new Gauge({
      name: 'trellis_certificate_expiry_seconds',
      help: 'Seconds until our SVID expires (negative once expired)',
      registry,
      collect() {
        const v = opts.certExpirySeconds();
        if (v !== undefined) this.set(v);
      },
    });
    this.controlPlaneConnected = new Gauge({
      name: 'trellis_control_plane_connected',
      help: '1 while the discovery stream is connected',
      registry,
      collect() {
        const c = opts.controlPlaneConnected?.();
        if (c !== undefined) this.set(c ? 1 : 0);
      },
    });
    this.ready = new Gauge({
      name: 'trellis_ready',
      help: '1 when the sidecar has a valid SVID, bundle and policy',
      registry,
      collect() {
        this.set(opts.ready() ? 1 : 0);
      },
    });
    this.pendingHandshakes = new Gauge({
      name: 'trellis_handshakes_pending',
      help: 'Inbound connections accepted and not yet judged (waiting for bytes, in the TLS handshake or awaiting the verdict)',
      registry,
      collect() {
        this.set(opts.pendingHandshakes?.() ?? 0);
      },
    });
    if (opts.processMetrics !== false) registerProcessMetrics(this.registry, 'trellis_process_');
  }

  /**
   * Records a refusal with its reason, and in the call ledger against
   * `peer`: its SPIFFE ID when proven (for a refused certificate, when its
   * chain verified), else '' (unauthenticated or unknown).
   */
  refuse(direction: Direction, reason: string, peer: string = UNAUTHENTICATED_PEER, detail = ''): void {
    this.refusals.inc({ direction, reason });
    this.calls.refused(this.now(), direction, peer, reason, detail);
  }

  /** Records a call let through (a connection on a TCP port, a request on an HTTP port) in the call ledger. */
  allow(direction: Direction, peer: string = UNAUTHENTICATED_PEER): void {
    this.calls.allowed(this.now(), direction, peer);
  }
}
