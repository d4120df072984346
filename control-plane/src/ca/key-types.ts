/**
 * The key and signature algorithms the CA knows: which CA key types `ca init`
 * can generate, how each signs, and which leaf keys an SVID may carry.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { CaError, CaErrorCode } from './ca-error';
import { der } from '@trellis/shared';

/** CA key types `trellis ca init --key-type` accepts. */
export const CA_KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;
/** One of {@link CA_KEY_TYPES}. */
export type CaKeyType = (typeof CA_KEY_TYPES)[number];

/** A signature algorithm as X.509 encodes it and node:crypto runs it. */
export interface SignatureAlgorithm {
  /** Human name, e.g. `ecdsa-with-SHA256`. */
  name: string;
  /** Dotted OID of the algorithm. */
  oid: string;
  /** Digest passed to `crypto.sign`/`crypto.verify`. */
  hash: 'sha256' | 'sha384' | 'sha512';
  /** The complete AlgorithmIdentifier SEQUENCE (with NULL parameters for RSA). */
  identifierDer: Buffer;
}

function ecdsa(name: string, oid: string, hash: SignatureAlgorithm['hash']): SignatureAlgorithm {
  return Object.freeze({ name, oid, hash, identifierDer: der.sequence(der.oid(oid)) });
}
function rsa(name: string, oid: string, hash: SignatureAlgorithm['hash']): SignatureAlgorithm {
  return Object.freeze({ name, oid, hash, identifierDer: der.sequence(der.oid(oid), der.nullValue()) });
}

/** Signature algorithms Trellis signs with and accepts on CSRs, by OID. */
export const SIGNATURE_ALGORITHMS: Readonly<Record<string, SignatureAlgorithm>> = Object.freeze({
  '1.2.840.10045.4.3.2': ecdsa('ecdsa-with-SHA256', '1.2.840.10045.4.3.2', 'sha256'),
  '1.2.840.10045.4.3.3': ecdsa('ecdsa-with-SHA384', '1.2.840.10045.4.3.3', 'sha384'),
  '1.2.840.10045.4.3.4': ecdsa('ecdsa-with-SHA512', '1.2.840.10045.4.3.4', 'sha512'),
  '1.2.840.113549.1.1.11': rsa('sha256WithRSAEncryption', '1.2.840.113549.1.1.11', 'sha256'),
  '1.2.840.113549.1.1.12': rsa('sha384WithRSAEncryption', '1.2.840.113549.1.1.12', 'sha384'),
  '1.2.840.113549.1.1.13': rsa('sha512WithRSAEncryption', '1.2.840.113549.1.1.13', 'sha512'),
});

/** node:crypto key generation parameters for a CA key type. */
export function generationParams(type: CaKeyType): { kind: 'ec'; namedCurve: string } | { kind: 'rsa'; modulusLength: number } {
  switch (type) {
    case 'ec-p256':
      return { kind: 'ec', namedCurve: 'P-256' };
    case 'ec-p384':
      return { kind: 'ec', namedCurve: 'P-384' };
    case 'rsa-2048':
      return { kind: 'rsa', modulusLength: 2048 };
  }
}

/**
 * Classifies a key as `ec-p256`, `ec-p384` or `rsa-<bits>` and says which
 * signature algorithm a CA holding it signs with. Throws UNSUPPORTED_KEY for
 * anything else (Ed25519, P-521, DSA, RSA under 2048 bits).
 */
export function describeKey(key: KeyObject, what: string): { keyType: string; algorithm: SignatureAlgorithm } {
  const kind = key.asymmetricKeyType;
  const d = key.asymmetricKeyDetails ?? {};
  if (kind === 'ec') {
    if (d.namedCurve === 'prime256v1') return { keyType: 'ec-p256', algorithm: SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.2']! };
    if (d.namedCurve === 'secp384r1') return { keyType: 'ec-p384', algorithm: SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.3']! };
    throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${what}: EC curve ${d.namedCurve ?? 'unknown'} is not supported (use P-256 or P-384)`, { field: what });
  }
  if (kind === 'rsa') {
    const bits = d.modulusLength ?? 0;
    if (bits < 2048 || bits > 4096) {
      throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${what}: RSA key of ${bits} bits is not supported (2048..4096)`, { field: what });
    }
    return { keyType: `rsa-${bits}`, algorithm: SIGNATURE_ALGORITHMS['1.2.840.113549.1.1.11']! };
  }
  throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${what}: ${kind ?? 'unknown'} keys are not supported (EC P-256/P-384 or RSA 2048..4096)`, { field: what });
}

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const P256 = '1.2.840.10045.3.1.7';
const P384 = '1.3.132.0.34';
const SPKI_EC_PREFIX: Array<{ crv: 'P-256' | 'P-384'; prefix: Buffer; size: number }> = [
  { crv: 'P-256', size: 32, prefix: spkiPrefix(P256, 65) },
  { crv: 'P-384', size: 48, prefix: spkiPrefix(P384, 97) },
];

/** The SPKI bytes before the EC point (04 || X || Y) for a named curve. */
function spkiPrefix(curve: string, pointLen: number): Buffer {
  const full = der.sequence(der.sequence(der.oid(EC_PUBLIC_KEY), der.oid(curve)), der.bitString(Buffer.alloc(pointLen)));
  return full.subarray(0, full.length - pointLen);
}

/** An uncompressed EC point found in SPKI DER, with its curve. */
export interface SpkiEcPoint {
  /** 0 = P-256, 1 = P-384 (the native verifier's numbering). */
  curve: 0 | 1;
  crv: 'P-256' | 'P-384';
  keyType: 'ec-p256' | 'ec-p384';
  /** 04 || X || Y, a view into the SPKI bytes. */
  point: Buffer;
}

/**
 * The uncompressed P-256/P-384 point of SPKI DER whose algorithm is exactly
 * id-ecPublicKey with that named curve, or undefined for anything else
 * (other curves, compressed points, explicit parameters, RSA). Says nothing
 * about whether the point is on the curve: the importer checks that.
 */
export function ecPointOfSpki(spki: Buffer): SpkiEcPoint | undefined {
  for (let i = 0; i < SPKI_EC_PREFIX.length; i++) {
    const c = SPKI_EC_PREFIX[i]!;
    if (spki.length === c.prefix.length + 2 * c.size + 1 && spki.compare(c.prefix, 0, c.prefix.length, 0, c.prefix.length) === 0 && spki[c.prefix.length] === 0x04) {
      return { curve: i as 0 | 1, crv: c.crv, keyType: c.crv === 'P-256' ? 'ec-p256' : 'ec-p384', point: spki.subarray(c.prefix.length) };
    }
  }
  return undefined;
}

/**
 * A public KeyObject from SubjectPublicKeyInfo DER.
 *
 * Why not always `createPublicKey({format:'der'})`: OpenSSL 3's DER decoder
 * costs about as much as an ECDSA verify, so the common uncompressed P-256 /
 * P-384 case goes through the JWK importer, which still checks the point is
 * on the curve. Everything else takes the general decoder.
 */
export function publicKeyFromSpki(spki: Buffer): KeyObject {
  const ec = ecPointOfSpki(spki);
  if (ec) {
    const size = (ec.point.length - 1) / 2;
    const x = ec.point.subarray(1, 1 + size);
    const y = ec.point.subarray(1 + size);
    return createPublicKey({ key: { kty: 'EC', crv: ec.crv, x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** The subjectPublicKey BIT STRING contents of SPKI DER (what RFC 5280 method 1 hashes for a key id). */
export function subjectPublicKeyBits(spki: Buffer): Buffer {
  const s = der.readWhole(spki, 0x30, 'subjectPublicKeyInfo');
  const alg = der.expectTlv(spki, s.start, 0x30, 'subjectPublicKeyInfo algorithm', s.end);
  const bits = der.expectTlv(spki, alg.end, 0x03, 'subjectPublicKey', s.end);
  return der.decodeBitString(spki, bits).bytes;
}
