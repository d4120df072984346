/**
 * Whether a host names the local machine's loopback interface: `localhost`,
 * any 127.0.0.0/8 address, `::1` (bracketed or not) and the IPv4-mapped
 * `::ffff:127.x.x.x`. Used wherever an endpoint without authentication must
 * stay local (the sidecar's admin port) and where a loopback name is an
 * acceptable `Host` (the control plane's admin API). Pure; no name is
 * resolved, so a DNS name that happens to resolve to 127.0.0.1 is not loopback.
 */

/** True when `host` (a name or address, IPv6 optionally in brackets) is a loopback name. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(v4);
  return m !== null && m[1] === '127' && m.slice(2).every((o) => Number(o) <= 255);
}
