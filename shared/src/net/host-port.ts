/**
 * Network addresses written as text: `HOST:PORT`, `[IPv6]:PORT`, and where a
 * default host applies, a bare `PORT`. The one parser and the one printer for
 * every flag, config field and pushed endpoint that names an address (as
 * grpc-js keeps one `subchannel-address.ts`).
 *
 * Rules: a port is 1 to 5 digits and at most 65535 (0 is allowed: a listener
 * asks the kernel for one); an IPv6 host is in brackets and holds only hex
 * digits, `:` and `.`; any other host is non-empty and holds no `:`, `/`,
 * brackets or white space. Pure; returns the reason instead of throwing, so
 * each caller raises its own typed error naming its flag or field.
 */

/** A host and a port; `host` has no brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Options for {@link parseHostPort}. */
export interface HostPortOptions {
  /** When given, a bare `PORT` means this host. */
  readonly defaultHost?: string;
}

const ADDRESS = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\s[\]/]+):)?(\d+)$/;

/** Reads `HOST:PORT` (or `PORT` alone when `opts.defaultHost` is set); returns the address or the reason it is not one. */
export function parseHostPort(text: string, opts: HostPortOptions = {}): HostPort | string {
  const want = opts.defaultHost === undefined ? 'HOST:PORT' : '[HOST:]PORT';
  const m = typeof text === 'string' ? ADDRESS.exec(text) : null;
  if (!m) return `expected ${want}`;
  if (m[1] === undefined && opts.defaultHost === undefined) return `expected ${want}`;
  const port = parsePort(m[2]!);
  if (port === undefined) return `port ${m[2]} is out of range`;
  const host = m[1] === undefined ? opts.defaultHost! : m[1].replace(/^\[(.*)\]$/, '$1');
  return Object.freeze({ host, port });
}

/** A port number from decimal text (1-5 digits, at most 65535), or undefined. */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** `host:port`, with brackets for an IPv6 host. The inverse of {@link parseHostPort}. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
