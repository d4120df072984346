/**
 * The checks every request on an `/http` inbound port goes through before
 * it may reach the app, whatever its protocol (HTTP/1.1 in http-inbound.ts,
 * HTTP/2 and gRPC in h2-inbound.ts): headers that read one way only, one
 * view of the target (request-target.ts, 400 otherwise), then
 * AuthorizationPolicy on that view (403, or gRPC status 7 on HTTP/2), and
 * the XFCC we vouch for. One function, so both protocols judge a request
 * the same way.
 *
 * Fails closed: a request from a connection whose authentication we cannot
 * find, a target that cannot be read as one view, or a DENY never reaches
 * the app; each refusal is counted with its reason (`bad_request`,
 * `bad_path`, `bad_host`, `authz_denied`).
 */
import { DEFAULT_PATH_NORMALIZATION, type Logger } from '@trellis/shared';
import { readRequestTarget, type RequestView } from './request-target';
import { decide, type Authorizer, type AuthzDecision, type Workload } from '../policy/authorizer';
import type { SidecarState } from '../state/sidecar-state';
import type { SidecarMetrics } from '../metrics/sidecar-metrics';

/** What authentication established about a connection's peer; empty for plaintext. */
export interface HttpPeer {
  /** The peer's SPIFFE ID (mTLS only). */
  readonly principal?: string;
  /** SHA-256 of the peer's leaf, hex, for XFCC `Hash=`. */
  readonly certSha256?: string;
}

/** Collaborators of the gate (and of the protocol servers built on it). */
export interface GateDeps {
  state: SidecarState;
  metrics: SidecarMetrics;
  logger: Logger;
  authorize: Authorizer;
  workload: Workload;
  appHost: string;
  appPort: number;
  /** The listener's bound port, for logs. */
  listenerPort(): number;
}

/** One request as read off either protocol. */
export interface GateInput {
  readonly method: string;
  /** The request-target as sent (HTTP/2: `:path`). */
  readonly url: string;
  /** `Host` (HTTP/2: `:authority`, or `host` when it is absent). */
  readonly host: string | undefined;
  /** The authenticated peer of the connection; undefined: its state was lost (denied). */
  readonly peer: HttpPeer | undefined;
  readonly sourceIp: string | undefined;
  /** Why the headers are ambiguous (checked by the protocol side), if they are. */
  readonly ambiguous?: string;
}

/** A refusal: status and body, and whether the connection must close after it. */
export interface GateRefusal {
  readonly ok: false;
  readonly status: 400 | 403;
  readonly body: string;
  readonly close: boolean;
  /** True for an AuthorizationPolicy DENY (gRPC answers it with status 7). */
  readonly denied: boolean;
}

/** The outcome of the gate. */
export type Gate = { readonly ok: true; readonly view: RequestView; readonly xfcc: string | undefined } | GateRefusal;

/** The body of a 403, as Envoy words it. */
export const DENIED_BODY = 'RBAC: access denied\n';

/**
 * Judges one request. Reads the snapshot once, so the path normalization
 * and the policies are of one version. Fails closed (see the file comment).
 */
export function gateRequest(deps: GateDeps, input: GateInput): Gate {
  if (input.ambiguous !== undefined) return badRequest(deps, input, 'bad_request', input.ambiguous);
  const snap = deps.state.current();
  const view = readRequestTarget(input.method, input.url, input.host, snap.authz?.pathNormalization ?? DEFAULT_PATH_NORMALIZATION);
  if (!view.ok) return badRequest(deps, input, view.reason, view.detail);
  const peer = input.peer;
  const decision: AuthzDecision = peer
    ? decide(deps.authorize, snap.authz?.policies ?? [], deps.workload, {
        principal: peer.principal,
        sourceIp: input.sourceIp,
        port: deps.appPort,
        http: { method: input.method, path: view.path, host: view.host },
      })
    : { decision: 'DENY', reason: 'connection state lost' };
  if (decision.decision !== 'ALLOW') {
    deps.metrics.refuse('inbound', 'authz_denied', peer?.principal, decision.reason);
    deps.logger.info('inbound request denied by policy', { port: deps.listenerPort(), principal: peer?.principal, method: input.method, path: view.path, reason: decision.reason });
    return { ok: false, status: 403, body: DENIED_BODY, close: false, denied: true };
  }
  deps.metrics.allow('inbound', peer?.principal);
  const ours = snap.credentials?.spiffeId;
  const xfcc = peer?.principal ? `By=${ours ?? ''};Hash=${peer.certSha256 ?? ''};URI=${peer.principal}` : undefined;
  return { ok: true, view, xfcc };
}

/** A 400 that closes the connection: the framing or the target is in doubt, so nothing after it is read. */
export function badRequest(deps: GateDeps, input: Pick<GateInput, 'method' | 'url'>, reason: string, detail: string): GateRefusal {
  deps.metrics.refuse('inbound', reason);
  deps.logger.info('inbound request refused', { port: deps.listenerPort(), method: input.method, path: input.url, reason, detail });
  return { ok: false, status: 400, body: `bad request: ${detail}\n`, close: true, denied: false };
}
