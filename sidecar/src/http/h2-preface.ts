/**
 * Telling HTTP/2 with prior knowledge (h2c) from HTTP/1.1 by a
 * connection's first bytes: HTTP/2 opens with a fixed 24-byte preface
 * (RFC 9113 §3.4) that no HTTP/1.1 request can start with (`PRI` is not a
 * method anyone serves, and `HTTP/2.0` is not an HTTP/1.x version). Pure.
 */

/** The client connection preface of HTTP/2. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * How long a connection may stay a proper prefix of the preface before it is
 * taken as HTTP/1.1 (or passed through): the preface is one packet from any
 * real client, and a peer that stops part-way must not hold its socket forever.
 */
export const PREFACE_WAIT_MS = 10_000;

/** What the first bytes of a plaintext HTTP connection are. */
export type HttpFirstBytes = 'h2' | 'http/1.1' | 'need-more';

/** Classifies `seen`, the bytes received so far: `need-more` while they are a proper prefix of the preface. */
export function classifyHttpPreface(seen: Buffer): HttpFirstBytes {
  const n = Math.min(seen.length, H2_PREFACE.length);
  if (seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return n === H2_PREFACE.length ? 'h2' : 'need-more';
  return 'http/1.1';
}
