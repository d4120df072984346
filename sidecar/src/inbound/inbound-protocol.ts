/**
 * The protocol an inbound port declares for its app, the suffix of
 * `--inbound [HOST:]PORT=APP_PORT[/PROTOCOL]`. Every suffix makes an HTTP
 * port (per-request authorization, XFCC, HTTP/1.1 and HTTP/2 from clients,
 * WebSocket); they differ only in how the sidecar speaks to the app:
 *
 * - `http`: learned once per app process by an h2c probe (app-h2c.ts);
 * - `h2c`, `grpc`: HTTP/2 cleartext with prior knowledge (RFC 9113 §3.3),
 *   never probed, as Istio does for a Service port named or `appProtocol`
 *   `http2`/`grpc`/`grpc-web` (Envoy's explicit HTTP/2 upstream protocol);
 *   the two are one behaviour, `grpc` says what the app is;
 * - `http1`: HTTP/1.1, never probed (Envoy's explicit HTTP/1.1 upstream).
 *
 * No suffix is a TCP port: bytes, authorized per connection.
 */
import type { InboundProtocol } from '@trellis/shared';
import type { AppHttpVersion } from '../http/app-h2c';

export { INBOUND_PROTOCOLS, INBOUND_PROTOCOL_LIST, isInboundProtocol, type InboundProtocol } from '@trellis/shared';

/** A suffix that declares the app's HTTP version (everything but `http`, which probes). */
export type DeclaredAppProtocol = Exclude<InboundProtocol, 'http'>;

/** How an HTTP port with declared protocol `declared` (undefined: `/http`) reaches its app. Pure. */
export function appHttpVersion(declared: DeclaredAppProtocol | undefined): AppHttpVersion {
  if (declared === undefined) return 'probe';
  return declared === 'http1' ? 'http1' : 'h2c';
}

/** The spec's suffix as written on the command line: `/grpc`, `/http`, or '' for a TCP port. Pure. */
export function inboundSuffix(spec: { readonly http: boolean; readonly appProtocol?: DeclaredAppProtocol }): string {
  if (!spec.http) return '';
  return `/${spec.appProtocol ?? 'http'}`;
}
