/**
 * Reads the facts a server needs about a TLS ClientHello before any TLS
 * work: whether the client can do TLS 1.3, the groups it supports and those
 * it sent key shares for (RFC 8446 4.1.2, 4.2.7, 4.2.8; RFC 8422). Used to
 * name the group a Node-path server negotiates (node:tls does not say) and
 * to refuse a classical-only client under the `require` key-exchange policy
 * with a counted reason rather than a bare handshake failure.
 *
 * Pure and bounded: bytes in, facts out. A ClientHello may span several
 * records; until all of it has arrived the answer is `incomplete`. Anything
 * that is not a well-formed ClientHello is `invalid` with the reason; no
 * input makes it throw.
 */

/** What the server learns from a ClientHello. */
export interface ClientHelloFacts {
  /** The client lists TLS 1.3 in supported_versions. */
  readonly tls13: boolean;
  /** supported_groups, in the client's order (NamedGroup codepoints). */
  readonly supportedGroups: readonly number[];
  /** The groups of the key_share entries, in the client's order. */
  readonly keyShareGroups: readonly number[];
  /** How many bytes of the input the records carrying the ClientHello took. */
  readonly recordBytes: number;
  /** The size of the ClientHello handshake message (header included). */
  readonly helloBytes: number;
}

/** The outcome of {@link readClientHello}. */
export type ClientHelloRead =
  | { readonly status: 'ok'; readonly hello: ClientHelloFacts }
  | { readonly status: 'incomplete' }
  | { readonly status: 'invalid'; readonly reason: string };

/** A ClientHello larger than this is refused as invalid (real ones are 0.2-2 KB; 16 KB is one record). */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SUPPORTED_GROUPS = 10;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_KEY_SHARE = 51;
const TLS13 = 0x0304;

const INCOMPLETE: ClientHelloRead = Object.freeze({ status: 'incomplete' as const });

function invalid(reason: string): ClientHelloRead {
  return Object.freeze({ status: 'invalid' as const, reason });
}

/** Reads the ClientHello at the start of `bytes` (the first bytes a client sent). Pure; never throws. */
export function readClientHello(bytes: Uint8Array): ClientHelloRead {
  // Gather the handshake bytes from consecutive handshake records.
  const parts: Uint8Array[] = [];
  let gathered = 0;
  let offset = 0;
  let needed = -1;
  while (needed < 0 || gathered < needed) {
    if (bytes.length < offset + 5) return INCOMPLETE;
    if (bytes[offset] !== RECORD_HANDSHAKE) return invalid(offset === 0 ? 'not a TLS handshake record' : 'the ClientHello is interleaved with another record type');
    if (bytes[offset + 1] !== 3) return invalid('not a TLS record version');
    const len = (bytes[offset + 3]! << 8) | bytes[offset + 4]!;
    if (len === 0) return invalid('an empty handshake record');
    if (bytes.length < offset + 5 + len) return INCOMPLETE;
    const fragment = bytes.subarray(offset + 5, offset + 5 + len);
    parts.push(fragment);
    gathered += fragment.length;
    offset += 5 + len;
    if (needed < 0 && gathered >= 4) {
      const head = concat(parts, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('the first handshake message is not a ClientHello');
      needed = 4 + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
      if (needed > MAX_CLIENT_HELLO_BYTES) return invalid(`a ClientHello of ${needed} bytes`);
    }
  }
  const msg = concat(parts, needed);
  const facts = parseBody(msg.subarray(4));
  if (typeof facts === 'string') return invalid(facts);
  return Object.freeze({ status: 'ok' as const, hello: Object.freeze({ ...facts, recordBytes: offset, helloBytes: needed }) });
}

function concat(parts: readonly Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    if (at >= n) break;
    const take = Math.min(p.length, n - at);
    out.set(p.subarray(0, take), at);
    at += take;
  }
  return out;
}

/** A cursor over one vector; every read checks the bounds. */
class Reader {
  constructor(private readonly b: Uint8Array, public at = 0, private readonly end = b.length) {}
  get left(): number {
    return this.end - this.at;
  }
  u8(): number {
    if (this.left < 1) throw new RangeError('short');
    return this.b[this.at++]!;
  }
  u16(): number {
    if (this.left < 2) throw new RangeError('short');
    const v = (this.b[this.at]! << 8) | this.b[this.at + 1]!;
    this.at += 2;
    return v;
  }
  skip(n: number): void {
    if (this.left < n) throw new RangeError('short');
    this.at += n;
  }
  /** A sub-reader over the next `n` bytes, which this reader then skips. */
  take(n: number): Reader {
    if (this.left < n) throw new RangeError('short');
    const r = new Reader(this.b, this.at, this.at + n);
    this.at += n;
    return r;
  }
}

function parseBody(body: Uint8Array): Omit<ClientHelloFacts, 'recordBytes' | 'helloBytes'> | string {
  try {
    const r = new Reader(body);
    r.skip(2 + 32); // legacy_version, random
    r.skip(r.u8()); // legacy_session_id
    const suites = r.u16();
    if (suites === 0 || suites % 2 !== 0) return 'a cipher_suites vector of odd or zero length';
    r.skip(suites);
    r.skip(r.u8()); // legacy_compression_methods
    let tls13 = false;
    const supportedGroups: number[] = [];
    const keyShareGroups: number[] = [];
    if (r.left === 0) return { tls13, supportedGroups, keyShareGroups }; // no extensions (an old TLS 1.2 client)
    const exts = r.take(r.u16());
    if (r.left !== 0) return 'bytes after the extensions';
    const seen = new Set<number>();
    while (exts.left > 0) {
      const type = exts.u16();
      const data = exts.take(exts.u16());
      if (seen.has(type)) return `extension ${type} twice`;
      seen.add(type);
      if (type === EXT_SUPPORTED_GROUPS) {
        const list = data.take(data.u16());
        while (list.left > 0) supportedGroups.push(list.u16());
      } else if (type === EXT_KEY_SHARE) {
        const list = data.take(data.u16());
        while (list.left > 0) {
          keyShareGroups.push(list.u16());
          list.skip(list.u16());
        }
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        const list = data.take(data.u8());
        while (list.left > 0) if (list.u16() === TLS13) tls13 = true;
      }
    }
    return { tls13, supportedGroups, keyShareGroups };
  } catch {
    return 'truncated ClientHello';
  }
}
