/**
 * Host matching for AuthorizationPolicy `hosts`/`notHosts` and for the
 * sidecar's check that an absolute-form target names the same host as the
 * `Host` header. A host compares case-insensitively (RFC 4343, as Istio
 * since CVE-2021-39155), without one trailing dot (the DNS root:
 * `example.com.` is `example.com`) and without its `:port`.
 *
 * The port: Istio's generated Envoy RBAC compares `:authority` as sent, so
 * `hosts: [example.com]` misses `example.com:8080` and Istio's docs advise
 * listing `example.com:*` too. Here the request's port is ignored unless the
 * policy value names one: `example.com` and `example.com:*` match any port,
 * `example.com:8080` only that port (a request without a port does not
 * match it). A sidecar listens on one port per application port anyway;
 * `ports` is the field for ports. Pure.
 */
import { matchString } from './string-match';

/** A host split into its canonical name and its port (undefined: none given). */
export interface CanonicalHost {
  /** Lower case, without a trailing dot; an IPv6 literal keeps its brackets. */
  readonly name: string;
  readonly port?: string;
}

/** Splits `host[:port]` (or `[v6]:port`) and canonicalizes the name. Pure. */
export function canonicalHost(value: string): CanonicalHost {
  const v = value.trim().toLowerCase();
  let name = v;
  let port: string | undefined;
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    if (end > 0 && v.charAt(end + 1) === ':') {
      name = v.slice(0, end + 1);
      port = v.slice(end + 2);
    }
  } else {
    const colon = v.lastIndexOf(':');
    if (colon >= 0 && /^(\d*|\*)$/.test(v.slice(colon + 1))) {
      name = v.slice(0, colon);
      port = v.slice(colon + 1);
    }
  }
  if (name.endsWith('.') && name !== '.') name = name.slice(0, -1);
  return port === undefined || port === '' ? { name } : { name, port };
}

/** True when two host values name the same host (case, trailing dot and port ignored). Pure. */
export function sameHost(a: string, b: string): boolean {
  return canonicalHost(a).name === canonicalHost(b).name;
}

/**
 * True when `host` (a Host header value) matches the policy value
 * `pattern` (exact, `prefix*`, `*suffix` or `*`, as Istio), as the module
 * comment says. An absent host (`''`) matches only `*`. Pure.
 */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  const want = canonicalHost(pattern);
  const got = canonicalHost(host);
  if (want.port !== undefined && want.port !== '*' && want.port !== got.port) return false;
  return matchString(want.name, got.name, true);
}
