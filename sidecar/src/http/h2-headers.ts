/**
 * Header lists across HTTP/2 and HTTP/1.1 hops, in the raw form Node gives
 * (`[name, value, name, value, ...]`). HTTP/2 forbids connection-specific
 * headers (RFC 9113 §8.2.2) and carries the target in pseudo-headers, so a
 * hop from one protocol to the other moves `Host` ↔ `:authority` and drops
 * what the other side may not receive. The hop-by-hop and XFCC rules are
 * http-forwarder.ts's (`upstreamHeaders`, `downstreamHeaders`): a request
 * is forwarded with every client-sent XFCC removed and ours added, whatever
 * the protocol on either side. Pure.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import { downstreamHeaders, downstreamTrailers, takesTrailers, upstreamHeaders } from '../inbound/http-forwarder';

export { takesTrailers };

/** Headers HTTP/2 may not carry (RFC 9113 §8.2.2); `te` is allowed as `trailers` only. */
const H2_FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** Headers that must appear at most once on an HTTP/2 request: a second copy lets policy and app read different values. */
const H2_SINGLE = new Set([':authority', ':path', ':method', 'host', 'content-length']);

/** gRPC's PERMISSION_DENIED, as Envoy answers a request its RBAC filter denies. */
export const GRPC_DENIED: Readonly<OutgoingHttpHeaders> = Object.freeze({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'RBAC: access denied' });

/** gRPC's UNAVAILABLE, as Envoy answers when the upstream cannot be reached. */
export const GRPC_UNAVAILABLE: Readonly<OutgoingHttpHeaders> = Object.freeze({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'upstream connect error' });

/** True when `contentType` names gRPC (`application/grpc`, `application/grpc+proto`, ...). */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^application\/grpc(?:[+;]|$)/i.test(contentType);
}

/** The value of the first `name` (lower case) in `raw`. */
export function rawValue(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i] === name) return raw[i + 1];
  return undefined;
}

/**
 * Why an HTTP/2 request's headers are ambiguous, or undefined: a repeated
 * `:authority`, `host`, `:path`, `:method` or `content-length`, or a `host`
 * that differs from `:authority` (RFC 9113 §8.3.1 lets them disagree, and
 * policy judges one while an app may read the other). Refused with 400.
 */
export function ambiguousH2Headers(raw: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i]!;
    if (!H2_SINGLE.has(n)) continue;
    if (seen.has(n)) return `more than one ${n} header`;
    seen.add(n);
  }
  const authority = rawValue(raw, ':authority');
  const host = rawValue(raw, 'host');
  if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) return ':authority and host name different hosts';
  return undefined;
}

/** The host an HTTP/2 request names: `:authority`, else `host`. */
export function h2Host(raw: readonly string[]): string | undefined {
  return rawValue(raw, ':authority') ?? rawValue(raw, 'host');
}

/** Adds one header to a Node header object, keeping repeats as arrays. */
function add(out: OutgoingHttpHeaders, name: string, value: string): void {
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [String(prev), value];
}

/**
 * The header object of an HTTP/2 request forwarded over HTTP/2: `:path` is
 * `target` (the normalized one policy judged), `:authority` the host judged,
 * connection-specific headers and every client-sent XFCC dropped, ours
 * added. `raw` may come from HTTP/2 (pseudo-headers) or HTTP/1.1 (`Host`).
 */
export function h2RequestHeaders(raw: readonly string[], method: string, target: string, authority: string | undefined, xfcc: string | undefined, scheme = 'http'): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': method, ':scheme': scheme, ':path': target };
  if (authority !== undefined) out[':authority'] = authority;
  // upstreamHeaders drops HTTP/1.1 hop-by-hop headers (and any the Connection header lists) and every XFCC.
  const plain = upstreamHeaders(withoutPseudo(raw), undefined);
  for (let i = 0; i + 1 < plain.length; i += 2) {
    const name = plain[i]!.toLowerCase();
    if (name.startsWith(':') || H2_FORBIDDEN.has(name)) continue;
    add(out, name, plain[i + 1]!);
  }
  // `te` is hop-by-hop, but `te: trailers` is what HTTP/2 lets through (and gRPC requires end to end).
  if (takesTrailers(raw)) out.te = 'trailers';
  if (xfcc !== undefined) out['x-forwarded-client-cert'] = xfcc;
  return out;
}

/**
 * The raw header list of an HTTP/2 request forwarded over HTTP/1.1: no
 * pseudo-headers, `Host` from `:authority`, then http-forwarder.ts's rules
 * (hop-by-hop and client XFCC out, ours in, `te: trailers` kept for a
 * client that takes trailers).
 */
export function h1RequestHeaders(raw: readonly string[], authority: string | undefined, xfcc: string | undefined): string[] {
  return upstreamHeaders(withoutPseudo(raw, true), xfcc, authority);
}

/**
 * An HTTP/1.1 response's headers as an HTTP/2 response: `:status`, and
 * without the connection-specific headers HTTP/2 forbids.
 */
export function h2ResponseFromH1(status: number, raw: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status };
  const kept = downstreamHeaders(raw);
  for (let i = 0; i + 1 < kept.length; i += 2) {
    const name = kept[i]!.toLowerCase();
    if (H2_FORBIDDEN.has(name)) continue;
    add(out, name, kept[i + 1]!);
  }
  return out;
}

/**
 * An HTTP/2 response's headers for the next HTTP/2 hop: as received, minus
 * anything connection-specific (a peer should send none; we do not pass
 * them on if it does).
 */
export function h2ResponseFromH2(raw: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (H2_FORBIDDEN.has(name)) continue;
    if (name === ':status') out[':status'] = Number(raw[i + 1]);
    else add(out, name, raw[i + 1]!);
  }
  return out;
}

/**
 * An HTTP/1.1 app's chunked trailers (raw list) as HTTP/2 trailers: names
 * in lower case (RFC 9113 §8.2.1), without the fields a trailer may not
 * carry (http-forwarder.ts's `downstreamTrailers`). Pure.
 */
export function h2TrailersFromH1(raw: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of downstreamTrailers(raw)) add(out, name.toLowerCase(), value);
  return out;
}

/** An HTTP/2 response's headers as an HTTP/1.1 response's raw list (no pseudo-headers). */
export function h1ResponseFromH2(raw: readonly string[]): string[] {
  return withoutPseudo(raw);
}

/** `raw` without its pseudo-headers (and without `host` when `dropHost`). */
function withoutPseudo(raw: readonly string[], dropHost = false): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.startsWith(':') || (dropHost && n.toLowerCase() === 'host')) continue;
    out.push(n, raw[i + 1]!);
  }
  return out;
}
