/**
 * Public-key comparison. One rule for every "is this certificate for this
 * key" check: compare the keys' DER SubjectPublicKeyInfo bytes.
 *
 * Not `KeyObject.equals`: across key types (an EC certificate against an RSA
 * key) it leaves "different key types" on OpenSSL's per-thread error queue
 * without clearing it, and the next unrelated key import in the process
 * (webcrypto `importKey`, a CA being created) then fails with that error.
 * Seen on Node 20 and Node 24; a KEY_MISMATCH check must not break the
 * process's next key operation.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';

/** The DER SubjectPublicKeyInfo of a public key, or of a private key's public half. */
export function spkiDer(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

/** True when `a` and `b` are the same public key (same algorithm, parameters and value). Never throws for valid keys. */
export function samePublicKey(a: KeyObject, b: KeyObject): boolean {
  return spkiDer(a).equals(spkiDer(b));
}
