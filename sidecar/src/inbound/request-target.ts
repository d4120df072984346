/**
 * The one view of an HTTP request that an /http inbound port both
 * authorizes and serves: the path normalized (path-normalization.ts in
 * @trellis/shared) and forwarded that way, the query exactly as sent, the
 * target in origin-form, the host as sent and checked.
 *
 * Request-target forms (RFC 9112 §3.2): origin-form is normalized;
 * absolute-form (`GET http://host/x`) must name the same host as `Host`
 * (compared as AuthorizationPolicy compares hosts: case, one trailing dot
 * and the port ignored), else it is refused, and the application receives
 * origin-form (with the target's authority as `Host` when the client sent
 * none, as RFC 9112 §3.2.2 says a proxy does); asterisk-form (`*`) only with
 * OPTIONS; authority-form only with CONNECT, which never reaches here.
 *
 * `Host` must be a host: `[IPv6]` or a reg-name of letters, digits and
 * `-._~!$&'()*+,;=`, then an optional `:port` (Envoy refuses an invalid
 * authority with 400 too). Also refused, and stricter than Envoy: `@`
 * (`new URL('http://' + host)` reads `evil@admin.internal` as
 * admin.internal) and `%` (it decodes `%61dmin.internal`), so an
 * application that builds a URL from `Host` reads the host policy judged.
 *
 * Fails closed: anything else is a refusal with its reason (the listener
 * answers 400 and closes the connection). Pure.
 */
import { normalizePath, sameHost, type PathNormalization } from '@trellis/shared';

/** The request as the application will receive it, which is what policy judges. */
export interface RequestView {
  readonly ok: true;
  /** The normalized path without its query: what `paths` rules match. */
  readonly path: string;
  /** The origin-form target the application receives: the normalized path, then the query as sent. */
  readonly target: string;
  /** The host policy judges (`Host`, or the target's authority when `Host` is absent); undefined when neither. */
  readonly host?: string;
  /** The `Host` to add upstream: set only for an absolute-form target without `Host`. */
  readonly addHost?: string;
}

/** Why a request cannot be served as one view; `reason` is the refusal's metrics label. */
export interface RequestRefusal {
  readonly ok: false;
  readonly reason: 'bad_path' | 'bad_host';
  readonly detail: string;
}

const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=]*)(?::[0-9]*)?$/;
const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;
// What no query may carry: the fragment Envoy refuses, and bytes Node's parser refuses already (checked again here, fail closed).
const BAD_QUERY = /[\u0000-\u0020\u007f-\uffff#]/;

/**
 * Reads `url` (Node's `req.url`, the request-target as sent) with `host`
 * (the `Host` header, if any) for `method` under `mode`. Pure.
 */
export function readRequestTarget(method: string, url: string, host: string | undefined, mode: PathNormalization): RequestView | RequestRefusal {
  if (host !== undefined && !HOST.test(host)) return { ok: false, reason: 'bad_host', detail: `Host ${JSON.stringify(host)} is not a host[:port]` };
  if (url === '*') {
    return method === 'OPTIONS' ? { ok: true, path: '*', target: '*', ...(host !== undefined ? { host } : {}) } : { ok: false, reason: 'bad_path', detail: 'the asterisk-form target is only for OPTIONS' };
  }
  let rest = url;
  let judgedHost = host;
  let addHost: string | undefined;
  if (!url.startsWith('/')) {
    const m = ABSOLUTE.exec(url);
    if (!m) return { ok: false, reason: 'bad_path', detail: 'the target is neither origin-form nor absolute-form' };
    const [, scheme, authority, after] = m as unknown as [string, string, string, string];
    if (!/^https?$/i.test(scheme)) return { ok: false, reason: 'bad_path', detail: `the target's scheme "${scheme}" is not http or https` };
    if (authority.includes('@')) return { ok: false, reason: 'bad_host', detail: 'the target carries user info' };
    if (authority === '' || !HOST.test(authority)) return { ok: false, reason: 'bad_host', detail: `the target's authority ${JSON.stringify(authority)} is not a host[:port]` };
    if (host === undefined) {
      judgedHost = authority;
      addHost = authority;
    } else if (!sameHost(authority, host)) {
      return { ok: false, reason: 'bad_host', detail: `the target names ${JSON.stringify(authority)} but Host is ${JSON.stringify(host)}` };
    }
    rest = after.startsWith('/') ? after : '/' + after;
  }
  const q = rest.indexOf('?');
  const rawPath = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q);
  if (BAD_QUERY.test(query)) return { ok: false, reason: 'bad_path', detail: query.includes('#') ? 'a fragment ("#") in the request target' : 'a space, control character or non-ASCII byte in the query' };
  const normalized = normalizePath(rawPath, mode);
  if (!normalized.ok) return { ok: false, reason: 'bad_path', detail: normalized.reason };
  return {
    ok: true,
    path: normalized.path,
    target: normalized.path + query,
    ...(judgedHost !== undefined ? { host: judgedHost } : {}),
    ...(addHost !== undefined ? { addHost } : {}),
  };
}
