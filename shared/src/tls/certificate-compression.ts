/**
 * TLS certificate compression (RFC 8879), which Trellis turns off on every
 * context it makes. OpenSSL 3.2 and later (Node 24 carries 3.5) compress the
 * certificate sent to a peer that asks for it with Brotli at high quality,
 * on every handshake: a Node 24 client connecting to an OpenSSL 3.5 server
 * that asked spent 4.3 ms of CPU per handshake, 1.9 ms with compression off
 * (220 against 478 handshakes per second from one client process). A
 * certificate chain is about 1 KB on a local network; the CPU matters more.
 * Envoy does not compress certificates unless configured to either.
 *
 * The option bits are above bit 31, so they are added, never OR-ed (a
 * JavaScript `|` works on 32 bits); node:tls passes `secureOptions` to
 * SSL_CTX_set_options as a 64-bit value.
 */

/** OpenSSL's SSL_OP_NO_TX_CERTIFICATE_COMPRESSION (bit 32): do not compress our certificate. */
export const SSL_OP_NO_TX_CERTIFICATE_COMPRESSION = 2 ** 32;
/** OpenSSL's SSL_OP_NO_RX_CERTIFICATE_COMPRESSION (bit 33): do not ask the peer to compress theirs. */
export const SSL_OP_NO_RX_CERTIFICATE_COMPRESSION = 2 ** 33;

/** `secureOptions` (node:tls) with certificate compression off in both directions, the other bits kept. Pure. */
export function withoutCertificateCompression(secureOptions = 0): number {
  let out = secureOptions;
  for (const bit of [SSL_OP_NO_TX_CERTIFICATE_COMPRESSION, SSL_OP_NO_RX_CERTIFICATE_COMPRESSION]) if (Math.floor(out / bit) % 2 === 0) out += bit;
  return out;
}
