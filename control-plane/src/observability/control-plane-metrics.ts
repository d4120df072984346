/**
 * The control plane's Prometheus metrics, on a registry of its own (no
 * prom-client global), every name prefixed `trellis_`.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Every metric the control plane records. */
export interface ControlPlaneMetrics {
  readonly registry: Registry;
  svidsIssued: Counter<'method'>;
  svidsRefused: Counter<'reason'>;
  connectedSidecars: Gauge<string>;
  pushes: Counter<'type'>;
  rejections: Counter<'type'>;
  pushToAck: Histogram<'type'>;
  streamErrors: Counter<'code'>;
  /** Nodes refused because a claim disagreed with the attestation, by which claim. */
  attestationRefusals: Counter<'reason'>;
  /** Node claims that disagreed with the pod's facts on the API server and were ignored, by which claim. */
  attestationIgnored: Counter<'reason'>;
  /** Connections closed by the server before or instead of serving them, by why. */
  connectionsRefused: Counter<'reason'>;
  /** TLS handshakes on the control plane's listeners, by listener (discovery, admin), key-exchange group and result. */
  handshakes: Counter<'listener' | 'group' | 'result'>;
  /** Open gRPC connections (TLS/HTTP/2 sessions), by whether one of their streams has authenticated. */
  connections: Gauge<'state'>;
  /** Sidecar reports on discovery streams, by result (accepted; dropped: a held report replaced by a newer one before it was taken; refused: malformed). */
  reports: Counter<'result'>;
  signingQueueDepth: Gauge<string>;
  intermediateExpiry: Gauge<string>;
  rootExpiry: Gauge<string>;
}

/** Creates the metrics on a fresh registry. `collectExpiry` is called at scrape time. */
export function createControlPlaneMetrics(opts: {
  collectExpiry?: () => { intermediateNotAfter?: Date; rootNotAfter?: Date };
  signingDepth?: () => number;
  nowMs?: () => number;
} = {}): ControlPlaneMetrics {
  const registry = new Registry();
  const now = opts.nowMs ?? Date.now;
  const registers = [registry];
  const expiry = (): { intermediateNotAfter?: Date; rootNotAfter?: Date } => (opts.collectExpiry ? opts.collectExpiry() : {});
  return {
    registry,
    svidsIssued: new Counter({ name: 'trellis_svids_issued_total', help: 'X.509-SVIDs issued, by how the workload authenticated.', labelNames: ['method'], registers }),
    svidsRefused: new Counter({ name: 'trellis_svids_refused_total', help: 'SVID requests refused, by error code.', labelNames: ['reason'], registers }),
    connectedSidecars: new Gauge({ name: 'trellis_connected_sidecars', help: 'Authenticated discovery streams currently open.', registers }),
    pushes: new Counter({ name: 'trellis_discovery_pushes_total', help: 'Discovery responses sent, by resource type.', labelNames: ['type'], registers }),
    rejections: new Counter({ name: 'trellis_discovery_rejections_total', help: 'Discovery responses NACKed by sidecars, by resource type.', labelNames: ['type'], registers }),
    pushToAck: new Histogram({
      name: 'trellis_discovery_push_ack_seconds',
      help: 'Time from sending a response to its ACK, by resource type.',
      labelNames: ['type'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    streamErrors: new Counter({ name: 'trellis_discovery_stream_errors_total', help: 'Discovery streams ended with an error, by Trellis error code.', labelNames: ['code'], registers }),
    attestationRefusals: new Counter({
      name: 'trellis_attestation_refusals_total',
      help: 'Discovery streams refused because the node claimed what its attestation does not say, by claim (service, labels, ports, address, namespace).',
      labelNames: ['reason'],
      registers,
    }),
    attestationIgnored: new Counter({
      name: 'trellis_attestation_ignored_claims_total',
      help: 'Node claims of Kubernetes sidecars that disagreed with their pod on the API server and were ignored (the pod decides), by claim (service, labels, ports).',
      labelNames: ['reason'],
      registers,
    }),
    connectionsRefused: new Counter({
      name: 'trellis_connections_refused_total',
      help: 'Discovery connections closed by the server: over the connection limit (limit), not authenticated in time (auth_timeout), or refused at their ClientHello under the require key-exchange policy (kex_not_hybrid, bad_client_hello).',
      labelNames: ['reason'],
      registers,
    }),
    handshakes: new Counter({
      name: 'trellis_handshakes_total',
      help: 'TLS handshakes on the discovery (counted when the connection first authenticates) and admin listeners, by key-exchange group and result (ok, or refused: kex_not_hybrid, bad_client_hello).',
      labelNames: ['listener', 'group', 'result'],
      registers,
    }),
    connections: new Gauge({ name: 'trellis_connections', help: 'Open discovery connections, by state (authenticated, unauthenticated).', labelNames: ['state'], registers }),
    reports: new Counter({
      name: 'trellis_sidecar_reports_total',
      help: 'Sidecar reports received on discovery streams, by result (accepted; dropped: held for the 200 ms between two reports and replaced by a newer one meanwhile; refused: malformed or over its bounds, the stream ended).',
      labelNames: ['result'],
      registers,
    }),
    signingQueueDepth: new Gauge({
      name: 'trellis_signing_queue_depth',
      help: 'CSR signings running or waiting.',
      registers,
      collect() {
        if (opts.signingDepth) this.set(opts.signingDepth());
      },
    }),
    intermediateExpiry: new Gauge({
      name: 'trellis_ca_intermediate_expiry_seconds',
      help: 'Seconds until the intermediate CA certificate expires.',
      registers,
      collect() {
        const d = expiry().intermediateNotAfter;
        if (d) this.set((d.getTime() - now()) / 1000);
      },
    }),
    rootExpiry: new Gauge({
      name: 'trellis_ca_root_expiry_seconds',
      help: 'Seconds until the earliest-expiring trusted root expires.',
      registers,
      collect() {
        const d = expiry().rootNotAfter;
        if (d) this.set((d.getTime() - now()) / 1000);
      },
    }),
  };
}
