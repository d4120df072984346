/**
 * The protocol of an app port, read as Istio reads a port (Protocol
 * Selection, explicit: `pkg/config/kube` ConvertProtocol): `appProtocol`
 * when it is set, else the port name, whose protocol is the part before the
 * first `-` (`grpc-api` → grpc, `http2-x` → http2), compared without case;
 * a name starting with `grpc-web` is gRPC-Web. Kubernetes' own appProtocol
 * values `kubernetes.io/h2c` (HTTP/2 over cleartext) and `kubernetes.io/ws`
 * (WebSocket over cleartext) count as http2 and http.
 *
 * What the sidecar is told for each (the `--inbound` suffix):
 * - `grpc`, `grpc-web` → `grpc`, and `http2` → `h2c`: HTTP/2 cleartext with
 *   prior knowledge to the app, never probed (Istio's HTTP2/GRPC/GRPC-Web
 *   ports, whose upstream is HTTP/2). `h2c` as a name is ours too (Istio
 *   knows only the appProtocol `kubernetes.io/h2c`).
 * - `http` → `http`: an HTTP port whose app's HTTP version is learned by a
 *   probe. Istio sends HTTP/1.1 to an `http` port's app; we keep the probe,
 *   since a port named `http` is as often an h2c server (a gRPC gateway,
 *   a Go server with h2c) and `/http` is what injection has always passed.
 * - anything else (`tcp`, `https`, `tls`, `mongo`, an unknown name, no name)
 *   → TCP: bytes, authorized per connection.
 *
 * Kubernetes' ContainerPort has no `appProtocol` (a Service port has); it is
 * read when a manifest carries it, as `trellis inject` may be given.
 */
import type { InboundProtocol } from '@trellis/shared';
import type { ContainerPort } from './pod-shape';

/** What a port is passed to the sidecar as: an `--inbound` suffix (no port name yields `http1`), or `tcp` for none. */
export type PortProtocol = 'tcp' | Exclude<InboundProtocol, 'http1'>;

/** The protocol of `port` (Istio's explicit protocol selection, above). Pure. */
export function portProtocol(port: Pick<ContainerPort, 'name' | 'appProtocol'>): PortProtocol {
  const declared = port.appProtocol !== undefined && port.appProtocol !== '' ? port.appProtocol : port.name ?? '';
  const lower = declared.toLowerCase();
  if (lower === 'kubernetes.io/h2c') return 'h2c';
  if (lower === 'kubernetes.io/ws') return 'http';
  if (lower.startsWith('grpc-web')) return 'grpc';
  const dash = lower.indexOf('-');
  switch (dash >= 0 ? lower.slice(0, dash) : lower) {
    case 'grpc':
      return 'grpc';
    case 'http2':
    case 'h2c':
      return 'h2c';
    case 'http':
      return 'http';
    default:
      return 'tcp';
  }
}

/**
 * Which of two protocols a port declared twice (in two containers, or twice
 * in one) is passed as: a declared HTTP version over `http`, `http` over
 * TCP, the first of two declared ones. Pure.
 */
export function strongerProtocol(a: PortProtocol, b: PortProtocol): PortProtocol {
  const rank = (p: PortProtocol): number => (p === 'tcp' ? 0 : p === 'http' ? 1 : 2);
  return rank(b) > rank(a) ? b : a;
}
