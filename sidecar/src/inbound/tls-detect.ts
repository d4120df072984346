/**
 * PERMISSIVE mode's protocol sniffing: a TLS connection opens with a
 * handshake record, content type 0x16 followed by major version 0x03.
 * Pure: looks at the first bytes only.
 */

/** What the first bytes of a connection say. */
export type FirstBytes = 'tls' | 'plaintext' | 'need-more';

/** Classifies the first bytes received on a connection. */
export function classifyFirstBytes(buf: Buffer): FirstBytes {
  if (buf.length === 0) return 'need-more';
  if (buf[0] !== 0x16) return 'plaintext';
  if (buf.length < 2) return 'need-more';
  return buf[1] === 0x03 ? 'tls' : 'plaintext';
}
