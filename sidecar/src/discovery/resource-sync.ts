/**
 * The client side of xDS-style sync for each subscribed type: the handlers
 * the sidecar registered, the version it accepted per type, the requests
 * that (re)subscribe a new stream with those versions, and the handling of
 * each response: decode and validate it, hand it to its handler, and reply
 * ACK (the handler returned) or NACK (it threw, with the version still in
 * force and the error). Knows nothing of the transport: replies go through
 * the `reply` callback of the stream the response came on.
 */
import { makeFederatedTrustBundle } from '../state/sidecar-state';
import {
  decodeResource,
  ENDPOINTS_TYPE_URL,
  isKnownTypeUrl,
  SVID_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  TrellisError,
  typeShortName,
  type DiscoveryRequestInit,
  type DiscoveryResponseMessage,
  type Logger,
  type ResourceBodies,
  type SvidResource,
  type TypeUrl,
} from '@trellis/shared';
import { GrpcStatus } from './grpc-status';

/** What the sidecar says about itself (identity is proven separately). */
export interface DiscoveryNode {
  spiffeId: string;
  namespace: string;
  labels: Record<string, string>;
  service: string;
  inboundPorts: number[];
  /** Address callers should use; empty = the address the control plane sees. */
  address?: string;
}

/** A resource handed to a handler. */
export interface ReceivedResource<T extends TypeUrl> {
  name: string;
  body: ResourceBodies[T];
}

/** Accepts (returns) or rejects (throws) a new version of one type. */
export type ResourceHandler<T extends TypeUrl> = (resources: ReadonlyArray<ReceivedResource<T>>, version: string) => void | Promise<void>;

/** The client's per-type view, for the sidecar's admin page and metrics. */
export interface ClientTypeState {
  state: 'NOT_RECEIVED' | 'ACKED' | 'NACKED';
  acceptedVersion: string | null;
  lastError: string | null;
  /** ISO-8601 time of the last accepted update. */
  updatedAt: string | null;
}

/** What an accepted response carried besides its handler's effect. */
export interface Accepted {
  /** An SVID (our identity checked), for the pending CSR. */
  svid?: SvidResource;
  /** The roots of a newly accepted trust bundle (PEM): the control plane is verified with them from now on. */
  bundleRootsPem?: string;
}

/** Per-type sync state and the handling of responses. */
export class ResourceSync {
  private readonly handlers = new Map<TypeUrl, ResourceHandler<TypeUrl>>();
  private readonly accepted = new Map<TypeUrl, string>();
  private readonly states = new Map<TypeUrl, ClientTypeState>();

  constructor(private readonly o: { node: DiscoveryNode; endpointNames?: string[]; logger: Logger; now: () => number }) {}

  /** Registers the handler for one type (and subscribes to it). */
  on(typeUrl: TypeUrl, handler: ResourceHandler<TypeUrl>): void {
    this.handlers.set(typeUrl, handler);
    this.states.set(typeUrl, { state: 'NOT_RECEIVED', acceptedVersion: null, lastError: null, updatedAt: null });
  }

  /** Per-type sync state, keyed by short type name. */
  syncState(): Record<string, ClientTypeState> {
    const out: Record<string, ClientTypeState> = {};
    for (const [t, s] of this.states) out[typeShortName(t)] = { ...s };
    return out;
  }

  /**
   * The requests that open a stream: one per subscribed type with the version
   * we hold (so an unchanged config is not re-sent), then the SVID type with
   * `csr` when one is pending; the node rides on the first.
   */
  subscriptions(csr?: Buffer): DiscoveryRequestInit[] {
    const out: DiscoveryRequestInit[] = [];
    for (const t of this.handlers.keys()) out.push({ type_url: t, version_info: this.accepted.get(t) ?? '', response_nonce: '', resource_names: this.namesFor(t) });
    out.push(csr ? this.svidRequest(csr) : { type_url: SVID_TYPE_URL, version_info: this.accepted.get(SVID_TYPE_URL) ?? '', response_nonce: '' });
    out[0]!.node = this.wireNode();
    return out;
  }

  /** The request carrying a CSR. */
  svidRequest(csr: Buffer): DiscoveryRequestInit {
    return { type_url: SVID_TYPE_URL, version_info: this.accepted.get(SVID_TYPE_URL) ?? '', response_nonce: '', csr };
  }

  /**
   * Handles one response: ACK or NACK through `reply`. Resolves with what an
   * accepted SVID or bundle carries for the client (nothing else otherwise).
   */
  async handle(res: DiscoveryResponseMessage, reply: (req: DiscoveryRequestInit) => void): Promise<Accepted> {
    const t = res.type_url;
    if (!isKnownTypeUrl(t)) {
      this.nack(reply, t, res, `unknown type_url ${t}`);
      return {};
    }
    if (t === SVID_TYPE_URL) {
      let svid: SvidResource;
      try {
        if (res.resources.length !== 1) throw new Error(`expected 1 SVID, got ${res.resources.length}`);
        svid = decodeResource(SVID_TYPE_URL, res.resources[0]!.body);
        if (svid.spiffeId !== this.o.node.spiffeId) throw new Error(`SVID is for ${svid.spiffeId}, expected ${this.o.node.spiffeId}`);
      } catch (err) {
        this.nack(reply, t, res, (err as Error).message);
        return {};
      }
      this.ack(reply, t, res);
      return { svid };
    }
    const handler = this.handlers.get(t);
    if (!handler) {
      this.nack(reply, t, res, `not subscribed to ${t}`);
      return {};
    }
    let accepted: Accepted = {};
    try {
      const decoded = res.resources.map((r) => ({ name: r.name, body: decodeResource(t, r.body) }));
      if (t === TRUST_BUNDLE_TYPE_URL) checkBundle(decoded as ReadonlyArray<ReceivedResource<typeof TRUST_BUNDLE_TYPE_URL>>);
      await handler(decoded, res.version_info);
      if (t === TRUST_BUNDLE_TYPE_URL) accepted = { bundleRootsPem: (decoded[0]!.body as ResourceBodies[typeof TRUST_BUNDLE_TYPE_URL]).rootsPem.join('\n') };
    } catch (err) {
      this.nack(reply, t, res, err instanceof TrellisError ? `${err.message} [${err.code}]` : (err as Error).message);
      return {};
    }
    this.ack(reply, t, res);
    return accepted;
  }

  private wireNode(): NonNullable<DiscoveryRequestInit['node']> {
    const n = this.o.node;
    return { spiffe_id: n.spiffeId, namespace: n.namespace, labels: n.labels, service: n.service, inbound_ports: n.inboundPorts, address: n.address ?? '' };
  }

  private ack(reply: (req: DiscoveryRequestInit) => void, t: TypeUrl, res: DiscoveryResponseMessage): void {
    this.accepted.set(t, res.version_info);
    if (this.states.has(t)) this.states.set(t, { state: 'ACKED', acceptedVersion: res.version_info, lastError: null, updatedAt: new Date(this.o.now()).toISOString() });
    reply({ type_url: t, version_info: res.version_info, response_nonce: res.nonce, resource_names: this.namesFor(t) });
  }

  private nack(reply: (req: DiscoveryRequestInit) => void, t: string, res: DiscoveryResponseMessage, message: string): void {
    this.o.logger.warn('discovery update rejected', { type: typeShortName(t), version: res.version_info, error: message });
    if (isKnownTypeUrl(t)) {
      const prev = this.states.get(t);
      if (prev) this.states.set(t, { ...prev, state: 'NACKED', lastError: message });
    }
    reply({
      type_url: t,
      version_info: isKnownTypeUrl(t) ? this.accepted.get(t) ?? '' : '',
      response_nonce: res.nonce,
      resource_names: isKnownTypeUrl(t) ? this.namesFor(t) : [],
      error_detail: { code: GrpcStatus.INVALID_ARGUMENT, message: message.slice(0, 4000) },
    });
  }

  private namesFor(t: TypeUrl): string[] {
    return t === ENDPOINTS_TYPE_URL ? this.o.endpointNames ?? [] : [];
  }
}

/**
 * A trust bundle is checked by the sidecar state's one rule before it is
 * ACKed or used to verify the control plane: every root, ours and each
 * federated trust domain's, a CA certificate; else the update is rejected
 * (TRELLIS_SIDECAR_BAD_BUNDLE) and the old bundle kept.
 */
function checkBundle(resources: ReadonlyArray<ReceivedResource<typeof TRUST_BUNDLE_TYPE_URL>>): void {
  if (resources.length !== 1) throw new Error(`expected one trust bundle, got ${resources.length}`);
  const body = resources[0]!.body;
  makeFederatedTrustBundle(body.trustDomain, body.rootsPem, body.federatedRootsPem ?? {});
}
