/**
 * Who may read the dashboard, as pure decisions over the facts of one
 * request. The dashboard shows the mesh's identities, certificates, traffic
 * and audit trail with the operator's admin credentials, so it is as
 * closed as Jupyter's server: it binds loopback, and every request needs
 * - a Host that names this server (a loopback name, or the listen address):
 *   a page on another site that rebinds its DNS name to 127.0.0.1 sends its
 *   own name and is refused (421);
 * - the random one-time token it printed, in the URL (`?token=`) or in the
 *   HttpOnly, SameSite=Strict cookie the first page load sets (401), compared
 *   in constant time;
 * - for the WebSocket, an Origin equal to the dashboard's own (403): another
 *   origin's page cannot open it, even from this machine with the cookie
 *   (a cookie is sent to any port of 127.0.0.1, and SameSite ignores ports).
 * Every check fails closed: a missing or malformed header is a refusal.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isAcceptedHost, type AcceptedHosts } from '@trellis/control-plane';

/** The cookie that carries the token after the first load. */
export const TOKEN_COOKIE = 'trellis_dashboard';

/** A fresh token: 128 random bits, hex. */
export function newDashboardToken(): string {
  return randomBytes(16).toString('hex');
}

/** What a request shows. */
export interface DashboardRequestFacts {
  readonly host: string | undefined;
  /** The `token` query parameter, when present. */
  readonly queryToken: string | null;
  readonly cookie: string | undefined;
  /** The Origin header (WebSocket upgrades only). */
  readonly origin?: string | undefined;
  readonly websocket: boolean;
}

/** The outcome. `setCookie`: the token came in the URL and valid, so the page's own requests may carry it as a cookie from now on. */
export type DashboardDecision =
  | { readonly allow: true; readonly setCookie: boolean }
  | { readonly allow: false; readonly status: 401 | 403 | 421; readonly reason: string };

/** Equal in constant time (over SHA-256 digests, so lengths leak nothing either). */
export function tokensEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}

/** The value of cookie `name` in a Cookie header, or null. */
export function cookieValue(header: string | undefined, name: string): string | null {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    if (part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

/**
 * True when `origin` is exactly this server's origin as the browser reached
 * it: `http://` and the (already accepted) Host. Fails closed on a missing
 * Origin, `null`, another scheme, host or port.
 */
export function isOwnOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined || host === undefined) return false;
  return origin.toLowerCase() === `http://${host.toLowerCase()}`;
}

/** Decides one request against the token and the accepted Hosts. Pure; fails closed. */
export function decideDashboardRequest(req: DashboardRequestFacts, token: string, hosts: AcceptedHosts): DashboardDecision {
  if (!isAcceptedHost(req.host, hosts)) return { allow: false, status: 421, reason: `Host "${req.host ?? ''}" is not this dashboard's address` };
  const fromQuery = req.queryToken !== null && tokensEqual(req.queryToken, token);
  const cookie = cookieValue(req.cookie, TOKEN_COOKIE);
  const fromCookie = cookie !== null && tokensEqual(cookie, token);
  if (!fromQuery && !fromCookie) return { allow: false, status: 401, reason: req.queryToken !== null || cookie !== null ? 'wrong dashboard token' : 'no dashboard token: open the URL trellis printed, with its ?token=' };
  if (req.websocket && !isOwnOrigin(req.origin, req.host)) return { allow: false, status: 403, reason: `Origin "${req.origin ?? ''}" is not this dashboard` };
  return { allow: true, setCookie: fromQuery };
}
