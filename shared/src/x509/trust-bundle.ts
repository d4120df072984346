/**
 * Trust bundles: the X.509 (and JWT) authorities of one trust domain, read
 * from a PEM file (go-spiffe x509bundle semantics) or a SPIFFE bundle document
 * (an RFC 7517 JWK set per the SPIFFE Trust Domain and Bundle spec), and
 * written back as either.
 *
 * A bundle is an immutable value: a reload builds a new one and the holder
 * swaps it whole, so a failed parse never disturbs the last good bundle.
 *
 * Deliberate choices where the spec and go-spiffe differ (corpus `spec_ambiguities`):
 * - `keys: []` is accepted as an empty bundle, which trusts nothing (the spec's
 *   "revoked all keys"); a document with no `keys` member at all is rejected,
 *   since the spec says `keys` MUST be present (go-spiffe rejects both).
 * - An `x509-svid` entry whose `x5c` holds several certificates is rejected, as
 *   go-spiffe does, although X509-SVID 6.2 lets consumers take the first: the
 *   publisher broke a MUST (6.1), and silently trusting only the first would
 *   hide which certificate it meant as the authority.
 * - Entries the spec says to ignore (missing/unknown `use`, unknown `kty`, an
 *   `x509-svid` entry without `x5c`) are skipped and listed in `ignored`, so an
 *   operator can see that a root was dropped.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { parseTrustDomain } from '../identity/spiffe-id';
import { parseCertificate, parseCertificates, type CertificateFacts } from './certificate-facts';
import { spkiDer } from './public-key';
import { derToPem, pemToDer } from './pem';
import { X509Error, X509ErrorCode, type X509ErrorCodeValue } from './x509-error';

/**
 * Where the mesh's roots are published in each namespace of a cluster (as
 * Istio's `istio-ca-root-cert` / `root-cert.pem`): the control plane keeps
 * the ConfigMap current, the injector mounts it as the sidecar's first trust
 * anchor. Named once here so the writer and the reader cannot drift.
 */
export const ROOT_CERT_CONFIGMAP = Object.freeze({ name: 'trellis-ca-root-cert', key: 'root-cert.pem' });

/** A JWT-SVID signing key of the trust domain. */
export interface JwtAuthority {
  readonly keyId: string;
  /** The public JWK as published (without `use`/`kid`). */
  readonly jwk: Readonly<JsonWebKey>;
}

/** An entry skipped while reading a SPIFFE bundle, and why. */
export interface IgnoredBundleEntry {
  readonly index: number;
  readonly reason: string;
}

/** The authorities of one trust domain. Frozen. */
export interface TrustBundle {
  readonly trustDomain: string;
  /** CA certificates, in document order, without duplicates. */
  readonly x509Authorities: readonly CertificateFacts[];
  readonly jwtAuthorities: readonly JwtAuthority[];
  /** `spiffe_refresh_hint` in seconds, when given. */
  readonly refreshHintSeconds: number | undefined;
  /** `spiffe_sequence`, when given. */
  readonly sequenceNumber: number | undefined;
  /** SPIFFE bundle entries skipped as the spec requires (unknown use or kty, no x5c). */
  readonly ignored: readonly IgnoredBundleEntry[];
}

/** Options for building or formatting a bundle. */
export interface TrustBundleOptions {
  readonly jwtAuthorities?: readonly JwtAuthority[];
  readonly refreshHintSeconds?: number;
  readonly sequenceNumber?: number;
}

const PRIVATE_PARAMS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];
const KNOWN_KTY = new Set(['EC', 'RSA', 'OKP']);

function err(code: X509ErrorCodeValue, source: string, msg: string, details: Record<string, unknown> = {}): X509Error {
  return new X509Error(code, `${source}: ${msg}`, { source, ...details });
}

function dedupe(certs: readonly CertificateFacts[]): CertificateFacts[] {
  const out: CertificateFacts[] = [];
  for (const c of certs) if (!out.some((o) => o.der.equals(c.der))) out.push(c);
  return out;
}

function checkCount(v: unknown, field: string, source: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw err(X509ErrorCode.BUNDLE_BAD_FIELD, source, `${field} must be a non-negative integer, got ${JSON.stringify(v)}`, { field });
  }
  return v;
}

/**
 * Builds a bundle from CA certificates already parsed. Throws {@link SpiffeIdError}
 * for a bad trust domain and `TRELLIS_X509_BUNDLE_BAD_FIELD` for bad counters.
 */
export function createTrustBundle(trustDomain: string, x509Authorities: readonly CertificateFacts[], opts: TrustBundleOptions = {}): TrustBundle {
  const td = parseTrustDomain(trustDomain);
  return Object.freeze({
    trustDomain: td,
    x509Authorities: Object.freeze(dedupe(x509Authorities)),
    jwtAuthorities: Object.freeze([...(opts.jwtAuthorities ?? [])]),
    refreshHintSeconds: checkCount(opts.refreshHintSeconds, 'spiffe_refresh_hint', 'bundle'),
    sequenceNumber: checkCount(opts.sequenceNumber, 'spiffe_sequence', 'bundle'),
    ignored: Object.freeze([]),
  });
}

/**
 * Reads a PEM trust bundle (concatenated CA certificates), as go-spiffe's
 * x509bundle.Parse does: empty input is an empty bundle, non-certificate
 * blocks are skipped, text with no PEM block is `TRELLIS_X509_NOT_PEM`, and a
 * damaged certificate is `TRELLIS_X509_MALFORMED_CERTIFICATE` (naming its index).
 * Certificates are not required to be CAs: v1 roots have no basicConstraints.
 */
export function parsePemBundle(trustDomain: string, pem: string | Buffer, source = 'bundle'): TrustBundle {
  const certs = parseCertificates(pemToDer(pem, 'CERTIFICATE', source));
  return createTrustBundle(trustDomain, certs);
}

function publicKeyFromJwk(jwk: Record<string, unknown>, source: string, index: number): KeyObject {
  try {
    return createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch (e) {
    throw err(X509ErrorCode.BUNDLE_BAD_KEY, source, `keys[${index}] is not a valid ${String(jwk['kty'])} public key: ${(e as Error).message}`, { index });
  }
}

/**
 * Reads a SPIFFE bundle document (JWK set) for `trustDomain`. Fails closed:
 * anything malformed throws {@link X509Error} with a `TRELLIS_X509_BUNDLE_*`
 * (or certificate) code and `details.index` of the entry; entries the spec says
 * to ignore are skipped and listed in `ignored`.
 */
export function parseSpiffeBundle(trustDomain: string, json: string | Buffer, source = 'bundle'): TrustBundle {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof json === 'string' ? json : json.toString('utf8'));
  } catch (e) {
    throw err(X509ErrorCode.BUNDLE_BAD_JSON, source, `not valid JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw err(X509ErrorCode.BUNDLE_BAD_JSON, source, 'a SPIFFE bundle must be a JSON object');
  const obj = doc as Record<string, unknown>;
  const refreshHintSeconds = checkCount(obj['spiffe_refresh_hint'], 'spiffe_refresh_hint', source);
  const sequenceNumber = checkCount(obj['spiffe_sequence'], 'spiffe_sequence', source);
  if (!('keys' in obj)) throw err(X509ErrorCode.BUNDLE_NO_KEYS, source, "no 'keys' member, so no authorities found");
  const keys = obj['keys'];
  if (!Array.isArray(keys)) throw err(X509ErrorCode.BUNDLE_BAD_JSON, source, "'keys' must be an array", { field: 'keys' });

  const x509: CertificateFacts[] = [];
  const jwt: JwtAuthority[] = [];
  const ignored: IgnoredBundleEntry[] = [];
  keys.forEach((entry: unknown, index: number) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw err(X509ErrorCode.BUNDLE_BAD_JSON, source, `keys[${index}] must be a JSON object`, { index });
    }
    const k = entry as Record<string, unknown>;
    for (const p of PRIVATE_PARAMS) {
      if (p in k) throw err(X509ErrorCode.BUNDLE_PRIVATE_KEY, source, `keys[${index}] carries private key parameter '${p}'`, { index });
    }
    const use = k['use'];
    if (use !== 'x509-svid' && use !== 'jwt-svid') {
      ignored.push(Object.freeze({ index, reason: use === undefined ? 'no use' : `use ${JSON.stringify(use)} is not understood` }));
      return;
    }
    if (typeof k['kty'] !== 'string' || !KNOWN_KTY.has(k['kty'])) {
      ignored.push(Object.freeze({ index, reason: `kty ${JSON.stringify(k['kty'])} is not understood` }));
      return;
    }
    const { kid, x5c, ...rest } = k;
    const jwkParams: Record<string, unknown> = { ...rest };
    delete jwkParams['use'];
    if (use === 'x509-svid') {
      if (!Array.isArray(x5c) || x5c.length === 0) {
        ignored.push(Object.freeze({ index, reason: 'x509-svid entry without x5c' }));
        return;
      }
      if (x5c.length !== 1) {
        throw err(X509ErrorCode.BUNDLE_X5C_COUNT, source, `keys[${index}]: expected a single certificate in x5c, got ${x5c.length}`, { index });
      }
      const b64 = x5c[0];
      if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) {
        throw err(X509ErrorCode.BUNDLE_BAD_X5C, source, `keys[${index}].x5c[0] is not base64`, { index });
      }
      let cert: CertificateFacts;
      try {
        cert = parseCertificate(Buffer.from(b64, 'base64'));
      } catch (e) {
        throw err(X509ErrorCode.BUNDLE_BAD_X5C, source, `keys[${index}].x5c[0]: ${(e as Error).message}`, { index });
      }
      const fromJwk = spkiDer(publicKeyFromJwk(jwkParams, source, index));
      let fromCert: Buffer;
      try {
        fromCert = spkiDer(createPublicKey({ key: cert.spki, format: 'der', type: 'spki' }));
      } catch (e) {
        throw err(X509ErrorCode.BUNDLE_BAD_X5C, source, `keys[${index}].x5c[0] has a public key that cannot be read: ${(e as Error).message}`, { index });
      }
      if (!fromJwk.equals(fromCert)) {
        throw err(X509ErrorCode.BUNDLE_KEY_MISMATCH, source, `keys[${index}]: the JWK key is not the key of its x5c certificate`, { index });
      }
      x509.push(cert);
      return;
    }
    if (typeof kid !== 'string' || kid.length === 0) throw err(X509ErrorCode.BUNDLE_MISSING_KID, source, `keys[${index}]: jwt-svid entry needs a non-empty kid`, { index });
    if (jwt.some((j) => j.keyId === kid)) throw err(X509ErrorCode.BUNDLE_DUPLICATE_KID, source, `keys[${index}]: kid ${JSON.stringify(kid)} appears twice`, { index });
    publicKeyFromJwk(jwkParams, source, index);
    jwt.push(Object.freeze({ keyId: kid, jwk: Object.freeze({ ...(jwkParams as JsonWebKey) }) }));
  });

  return Object.freeze({
    trustDomain: parseTrustDomain(trustDomain),
    x509Authorities: Object.freeze(dedupe(x509)),
    jwtAuthorities: Object.freeze(jwt),
    refreshHintSeconds,
    sequenceNumber,
    ignored: Object.freeze(ignored),
  });
}

/** The bundle's X.509 authorities as concatenated PEM (the `trellis bundle export --format pem` form). */
export function formatPemBundle(bundle: TrustBundle): string {
  return bundle.x509Authorities.map((c) => derToPem(c.der)).join('');
}

/**
 * The bundle as a SPIFFE bundle document (pretty JSON, trailing newline):
 * one `x509-svid` entry per CA with its key parameters and a single-cert `x5c`
 * and no `kid` (X509-SVID 6.1), then the `jwt-svid` keys, then the sequence and
 * refresh hint when set. `parseSpiffeBundle` reads it back to the same bundle.
 * Throws `TRELLIS_X509_BUNDLE_BAD_KEY` for an authority whose key has no JWK form.
 */
export function formatSpiffeBundle(bundle: TrustBundle): string {
  const keys: Record<string, unknown>[] = [];
  bundle.x509Authorities.forEach((c, index) => {
    let params: JsonWebKey;
    try {
      params = createPublicKey({ key: c.spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
    } catch (e) {
      throw err(X509ErrorCode.BUNDLE_BAD_KEY, 'bundle', `authority #${index + 1} (${c.subjectText || c.serialHex}) has a key that cannot be written as a JWK: ${(e as Error).message}`, { index });
    }
    keys.push({ use: 'x509-svid', ...params, x5c: [c.der.toString('base64')] });
  });
  for (const j of bundle.jwtAuthorities) keys.push({ use: 'jwt-svid', kid: j.keyId, ...j.jwk });
  const doc: Record<string, unknown> = { keys };
  if (bundle.sequenceNumber !== undefined) doc['spiffe_sequence'] = bundle.sequenceNumber;
  if (bundle.refreshHintSeconds !== undefined) doc['spiffe_refresh_hint'] = bundle.refreshHintSeconds;
  return JSON.stringify(doc, null, 2) + '\n';
}
