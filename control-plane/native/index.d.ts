/**
 * ECDSA P-256/P-384 verification from an uncompressed point (04 || X || Y).
 * `curve`: 0 = P-256, 1 = P-384; `hash`: 0 = SHA-256, 1 = SHA-384, 2 = SHA-512.
 * Returns 1 when the DER signature verifies, 0 when it does not, -1 when the
 * point is not an uncompressed point on the curve. Null when the addon is not built.
 */
export declare const verify: ((curve: 0 | 1, point: Buffer, hash: 0 | 1 | 2, message: Buffer, signatureDer: Buffer) => -1 | 0 | 1) | null;
/** Why the addon did not load, when it did not. */
export declare const loadError: Error | null;
