/**
 * Which `Host` the admin API answers to. A browser tricked by DNS rebinding
 * sends the attacker's name (`Host: attacker.example:15014`) to our address;
 * refusing every Host but our own closes that door even before mTLS does.
 *
 * Accepted: the configured admin address with the bound port (unless it is a
 * wildcard such as 0.0.0.0, which no client writes), every `--admin-host`
 * entry, and any loopback name (`localhost`, `127.x.x.x`, `[::1]`) on any
 * port. Loopback names are safe to accept: rebinding needs a name the
 * attacker controls, and a page cannot make a browser send a loopback Host to
 * another name's address; a local client or `kubectl port-forward` (whose
 * local port may differ from ours) writes exactly those names. Pure.
 */
import { isLoopbackHost } from '@trellis/shared';

/** The Host values accepted besides loopback names, lower-case `host:port` (IPv6 in brackets). */
export type AcceptedHosts = ReadonlySet<string>;

const WILDCARDS = new Set(['', '0.0.0.0', '::', '[::]']);

/** `host` with IPv6 literals in brackets, lower-case. */
function bracket(host: string): string {
  const h = host.toLowerCase();
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}

/** Splits a Host value or an `--admin-host` entry into host and port (`defaultPort` when none is written). */
export function splitHost(value: string, defaultPort: number): { host: string; port: number } | null {
  const v = value.trim().toLowerCase();
  // A bare IPv6 literal (what $(POD_IP) expands to on an IPv6 cluster) has no port.
  if (/^[0-9a-f:.]+$/.test(v) && (v.match(/:/g) ?? []).length >= 2) return { host: `[${v}]`, port: defaultPort };
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]\s/@]+)(?::(\d{1,5}))?$/.exec(v);
  if (!m) return null;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!(port > 0 && port <= 65535)) return null;
  return { host: m[1]!, port };
}

/**
 * The Host values the admin endpoint bound to `listenHost:boundPort` accepts,
 * besides loopback names. `extra` are `HOST[:PORT]` entries (port default:
 * the bound port), e.g. the pod IP or a Service name; an entry that is not
 * HOST[:PORT] is skipped (config validation reports it first).
 */
export function acceptedAdminHosts(listenHost: string, boundPort: number, extra: readonly string[] = []): AcceptedHosts {
  const out = new Set<string>();
  if (!WILDCARDS.has(listenHost.toLowerCase())) out.add(`${bracket(listenHost)}:${boundPort}`);
  for (const e of extra) {
    const hp = splitHost(e, boundPort);
    if (hp) out.add(`${bracket(hp.host)}:${hp.port}`);
  }
  return out;
}

/**
 * True when the request's Host header names this admin endpoint. Fails
 * closed: a missing or malformed Host is refused. HTTPS's default port (443)
 * is assumed when the header carries none.
 */
export function isAcceptedHost(hostHeader: string | undefined, accepted: AcceptedHosts): boolean {
  if (hostHeader === undefined) return false;
  const hp = splitHost(hostHeader, 443);
  if (!hp) return false;
  if (isLoopbackHost(hp.host)) return true;
  return accepted.has(`${bracket(hp.host)}:${hp.port}`);
}
