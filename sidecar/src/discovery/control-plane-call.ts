/**
 * Dialling the control plane: one discovery call (gRPC over HTTP/2 on TLS)
 * with the transport settings the grpc-js channel had, and the TLS settings
 * that verify the server. The control plane is known by its exact SPIFFE ID
 * (never by hostname) on a certificate the shared X.509-SVID verifier
 * accepts against the current trust bundle, as the CLI's admin client checks
 * it. Fails closed: anything else refuses the server.
 */
import {
  DISCOVERY_SERVICE,
  groupsList,
  isSpiffeId,
  Oid,
  parseSpiffeId,
  uriSansOfPeerCertificate,
  verifyPeerCertificateSvid,
  type KeyExchangePolicy,
} from '@trellis/shared';
import { DiscoveryError, DiscoveryErrorCode } from './discovery-error';
import { GrpcBidiCall, type BidiCallListener, type CallTls } from './grpc-bidi-call';
import type { ClientCredentials } from './stream-credentials';

/** Transport settings, as the grpc-js channel had them. */
const MAX_RECEIVE_MESSAGE_BYTES = 16 * 1024 * 1024;
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;
const CONNECT_TIMEOUT_MS = 20_000;
/** SNI sent to the control plane (it is verified by SPIFFE ID, not by name). */
const CONTROL_PLANE_SERVERNAME = 'trellis-control-plane';
const STREAM_PATH = `/${DISCOVERY_SERVICE}/StreamResources`;

/** The response header by which a control plane says it takes sidecar reports. */
export const REPORTS_HEADER = 'trellis-reports';

/** What {@link controlPlaneTls} needs. */
export interface ControlPlaneTlsOptions {
  /** The roots the control plane's chain must reach (PEM): the bootstrap bundle, then the latest accepted one. */
  readonly rootsPem: string;
  /** Our SVID for mTLS, or null to connect with a bearer token. */
  readonly credentials: ClientCredentials | null;
  readonly expectedSpiffeId: string;
  readonly keyExchange: KeyExchangePolicy;
  readonly now: () => Date;
  /** Told what the server presented when it was not the expected SPIFFE ID. */
  readonly onWrongIdentity: (presented: string) => void;
}

/** The TLS settings of a call to the control plane, with its server check (see the module doc). */
export function controlPlaneTls(o: ControlPlaneTlsOptions): CallTls {
  const expected = o.expectedSpiffeId;
  const trustDomain = isSpiffeId(expected) ? parseSpiffeId(expected).trustDomain : '';
  return {
    caPem: o.rootsPem,
    ...(o.credentials ? { keyPem: o.credentials.keyPem, certPem: o.credentials.chainPem } : {}),
    servername: CONTROL_PLANE_SERVERNAME,
    ecdhCurve: groupsList(o.keyExchange),
    checkServerIdentity: (_host, cert) => {
      const uris = uriSansOfPeerCertificate(cert);
      if (uris.length !== 1 || uris[0] !== expected) {
        o.onWrongIdentity(uris.join(',') || 'no SPIFFE ID');
        return new DiscoveryError(DiscoveryErrorCode.SERVER_IDENTITY, `control plane presented ${uris.join(',') || 'no SPIFFE ID'}, expected ${expected}`);
      }
      const svid = verifyPeerCertificateSvid(cert, trustDomain, [o.rootsPem], { now: o.now(), requiredEku: Oid.serverAuth });
      if (svid.ok) return undefined;
      return new DiscoveryError(DiscoveryErrorCode.SERVER_IDENTITY, `control plane presented ${expected} on a certificate that is not a valid X.509-SVID: ${svid.code}: ${svid.reason}`);
    },
  };
}

/** Opens the discovery stream to `address` with `tls` and `metadata` (a bearer token, or none over mTLS). */
export function openControlPlaneCall(address: string, tls: CallTls, metadata: Record<string, string>, listener: BidiCallListener): GrpcBidiCall {
  return new GrpcBidiCall(
    {
      address,
      path: STREAM_PATH,
      tls,
      metadata,
      maxReceiveMessageBytes: MAX_RECEIVE_MESSAGE_BYTES,
      keepaliveMs: KEEPALIVE_MS,
      keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    },
    listener,
  );
}
