/**
 * Certificate serial numbers: one way to write them, one way to make them.
 *
 * Everywhere Trellis compares, stores, pushes or prints a serial it uses the
 * form {@link normaliseSerial} returns: lower-case hex, no separators, no
 * leading zeros (`00:0A:1b` → `a1b`). Two normalisers that disagreed once
 * kept a revoked serial in force (one kept the leading zeros, the other did
 * not); there is now one. New serials come from {@link randomSerialHex}:
 * 126 random bits, positive and never zero, as RFC 5280 4.1.2.2 and the
 * CA/Browser Forum's 64-bit minimum ask.
 *
 * Pure apart from the random source, which is a parameter.
 */
import { randomBytes } from 'node:crypto';
import { X509Error, X509ErrorCode } from './x509-error';

/** The longest serial RFC 5280 4.1.2.2 lets a conforming CA write: 20 octets. */
export const MAX_SERIAL_HEX_DIGITS = 40;

/**
 * Normalises a serial written as hex (`0A:1b`, `0x0a1b`, `0A 1B`, Node's
 * `serialNumber`, our DER reader's bytes) to lower-case hex without
 * separators or leading zeros. Throws X509Error `TRELLIS_X509_BAD_SERIAL`
 * unless it is hex of at most 20 significant octets; fails closed, never guesses.
 */
export function normaliseSerial(input: string): string {
  const hex = typeof input === 'string' ? input.trim().replace(/[:\s]/g, '').replace(/^0x/i, '').toLowerCase() : '';
  if (!/^[0-9a-f]+$/.test(hex)) {
    throw new X509Error(X509ErrorCode.BAD_SERIAL, `serial ${JSON.stringify(String(input).slice(0, 80))} is not a hex certificate serial`, { field: 'serial' });
  }
  const significant = hex.replace(/^0+(?=.)/, '');
  if (significant.length > MAX_SERIAL_HEX_DIGITS) {
    throw new X509Error(X509ErrorCode.BAD_SERIAL, `serial "${significant.slice(0, 48)}…" is longer than 20 octets (RFC 5280 4.1.2.2)`, { field: 'serial' });
  }
  return significant;
}

/**
 * A fresh serial for a certificate Trellis signs: 16 random bytes with the
 * top bit cleared (positive, no sign octet needed) and the next one set
 * (never zero, and no leading zero digit, so the hex is already in the one
 * form): 126 random bits, well over the CA/Browser Forum's 64. `random` is the
 * byte source (node:crypto by default; tests pass a fixed one).
 */
export function randomSerial(random: (n: number) => Uint8Array = randomBytes): Buffer {
  const b = Buffer.from(random(16));
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b;
}

/** {@link randomSerial} as hex (already in the {@link normaliseSerial} form). */
export function randomSerialHex(random?: (n: number) => Uint8Array): string {
  return randomSerial(random).toString('hex');
}
