/**
 * Certificate path building and validation (the RFC 5280 section 6 subset an
 * X.509-SVID verifier needs), over {@link CertificateFacts}.
 *
 * From the leaf, candidate issuers (trust anchors first, then the untrusted
 * intermediates) are those whose subject equals the child's issuer and whose
 * SKI matches the child's AKI when both are present; each link's signature is
 * verified with node:crypto. Every certificate on the path must be within its
 * validity at `now` (anchors included), every issuer must be a CA with
 * keyCertSign, pathLen constraints hold, no certificate may carry a critical
 * extension we do not evaluate (name constraints included: we do not evaluate
 * them, so we refuse them), keys are RSA >= 2048 bits, EC P-256/P-384/P-521
 * or Ed25519, and when `requiredEku` is given the leaf and every
 * intermediate that restricts EKU must allow it. SHA-1 and unknown signature
 * algorithms are refused.
 *
 * A handful of RFC 5280 MUSTs on certificate shape are enforced too (see
 * `NONCONFORMING`). Times are compared at one-second granularity, the
 * resolution certificates encode (x509-limbo `notafter-fractional`).
 *
 * A v1 trust anchor (no extensions) is exempt from the CA shape rules. Not
 * evaluated, deliberately: policy constraints (refused when critical) and peer
 * host names (SPIFFE peers are matched by ID). CRLs and OCSP are out of scope: Trellis revokes through the control
 * plane's revocation resource. Fails closed; pure apart from node:crypto.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { CertificateFacts } from './certificate-facts';
import { Oid } from './oids';

/** Every code a rejected {@link PathVerdict} can carry. Stable; documented in docs/errors.md. */
export const PathErrorCode = Object.freeze({
  /** No issuer for some certificate among the anchors and intermediates: the chain does not reach a trust anchor. */
  UNTRUSTED: 'TRELLIS_X509_PATH_UNTRUSTED',
  /** A signature on the path does not verify with its issuer's key. */
  BAD_SIGNATURE: 'TRELLIS_X509_PATH_BAD_SIGNATURE',
  /** A signature algorithm we refuse (SHA-1) or cannot check (RSA-PSS, unknown). */
  UNSUPPORTED_ALGORITHM: 'TRELLIS_X509_PATH_UNSUPPORTED_ALGORITHM',
  /** A key on the path that is too weak (RSA under 2048 bits) or of a type we do not accept (not P-256/P-384/P-521, RSA or Ed25519). */
  WEAK_KEY: 'TRELLIS_X509_PATH_WEAK_KEY',
  /** A certificate on the path (anchor included) has expired at `now`. */
  EXPIRED: 'TRELLIS_X509_PATH_EXPIRED',
  /** A certificate on the path is not yet valid at `now`. */
  NOT_YET_VALID: 'TRELLIS_X509_PATH_NOT_YET_VALID',
  /** An issuer without basicConstraints cA=true. */
  ISSUER_NOT_CA: 'TRELLIS_X509_PATH_ISSUER_NOT_CA',
  /** An issuer whose keyUsage lacks keyCertSign. */
  ISSUER_NO_KEY_CERT_SIGN: 'TRELLIS_X509_PATH_ISSUER_NO_KEY_CERT_SIGN',
  /** More intermediates below a CA than its pathLen allows. */
  PATH_LEN_EXCEEDED: 'TRELLIS_X509_PATH_LEN_EXCEEDED',
  /** A critical extension the validator does not evaluate (e.g. nameConstraints, policyConstraints). */
  UNHANDLED_CRITICAL_EXTENSION: 'TRELLIS_X509_PATH_UNHANDLED_CRITICAL_EXTENSION',
  /** The leaf or an intermediate restricts extendedKeyUsage and excludes the required purpose. */
  EKU_NOT_ALLOWED: 'TRELLIS_X509_PATH_EKU_NOT_ALLOWED',
  /** Path building gave up: more than `maxIntermediates`, or too many candidates. */
  TOO_COMPLEX: 'TRELLIS_X509_PATH_TOO_COMPLEX',
  /**
   * A certificate breaks an RFC 5280 MUST this validator enforces: critical AKI,
   * missing AKI (except self-issued), keyCertSign without cA, a CA with
   * non-critical basicConstraints, no SKI or an empty subject, an empty issuer,
   * non-critical policyConstraints, a zero or over-20-byte serial.
   */
  NONCONFORMING: 'TRELLIS_X509_PATH_NONCONFORMING',
});

/** One of the {@link PathErrorCode} values. */
export type PathErrorCodeValue = (typeof PathErrorCode)[keyof typeof PathErrorCode];

/** Options for {@link verifyCertificatePath}. */
export interface PathValidationOptions {
  /** The validation time. Required: decisions take the time as a parameter. */
  readonly now: Date;
  /** Purpose OID the leaf must be usable for (e.g. Oid.serverAuth); omitted: not checked. */
  readonly requiredEku?: string;
  /** Maximum intermediates between leaf and anchor, self-issued ones not counted (default 6). */
  readonly maxIntermediates?: number;
}

/** The outcome: the path from leaf to anchor, or the reason none was found. */
export type PathVerdict =
  | { readonly ok: true; readonly path: readonly CertificateFacts[] }
  | { readonly ok: false; readonly code: PathErrorCodeValue; readonly reason: string };

const POLICY_CONSTRAINTS = '2.5.29.36';

const UNDERSTOOD = new Set<string>([
  Oid.basicConstraints,
  Oid.keyUsage,
  Oid.extKeyUsage,
  Oid.subjectAltName,
  Oid.subjectKeyIdentifier,
  Oid.authorityKeyIdentifier,
]);

type Fail = { readonly ok: false; readonly code: PathErrorCodeValue; readonly reason: string };

function fail(code: PathErrorCodeValue, reason: string): Fail {
  return Object.freeze({ ok: false as const, code, reason });
}

function label(c: CertificateFacts): string {
  return c.subjectText || (c.subjectAltName.uris[0] ?? `serial ${c.serialHex}`);
}

function timeCheck(c: CertificateFacts, now: number, role: string): Fail | undefined {
  if (now < c.notBefore.getTime()) return fail(PathErrorCode.NOT_YET_VALID, `${role} ${label(c)} is not valid before ${c.notBefore.toISOString()}`);
  if (now > c.notAfter.getTime()) return fail(PathErrorCode.EXPIRED, `${role} ${label(c)} expired at ${c.notAfter.toISOString()}`);
  return undefined;
}

/** The RFC 5280 shape rules enforced on every certificate of the path. */
function conformanceCheck(c: CertificateFacts, role: string): Fail | undefined {
  const bad = (why: string): Fail => fail(PathErrorCode.NONCONFORMING, `${role} ${label(c)} ${why}`);
  if (c.serial.length === 0 || (c.serial.length === 1 && c.serial[0] === 0)) return bad('has serial number 0 (RFC 5280 4.1.2.2)');
  if (c.serial.length > 20) return bad(`has a ${c.serial.length}-byte serial number, more than 20 (RFC 5280 4.1.2.2)`);
  if (c.issuerText === '' && c.issuer.length <= 2) return bad('has an empty issuer (RFC 5280 4.1.2.4)');
  if (c.criticalExtensions.includes(Oid.authorityKeyIdentifier)) return bad('marks authorityKeyIdentifier critical (RFC 5280 4.2.1.1)');
  // A trust anchor is a (name, key) pair (RFC 5280 6.1.1): how it was itself issued does not matter.
  if (c.version === 3 && !c.authorityKeyId && !isSelfIssued(c) && role !== 'trust anchor') return bad('has no authorityKeyIdentifier (RFC 5280 4.2.1.1)');
  if (c.extensions.some((e) => e.oid === POLICY_CONSTRAINTS && !e.critical)) return bad('has a non-critical policyConstraints extension (RFC 5280 4.2.1.11)');
  if (c.keyUsage.keyCertSign && !c.basicConstraints.ca) return bad('asserts keyCertSign without basicConstraints cA (RFC 5280 4.2.1.3)');
  return undefined;
}

function keyCheck(c: CertificateFacts, role: string): Fail | undefined {
  const t = c.keyType;
  if (t === 'other') return fail(PathErrorCode.WEAK_KEY, `${role} ${label(c)} has a key of an unsupported type (${c.publicKeyAlgorithm})`);
  if (t.startsWith('rsa-') && Number(t.slice(4)) < 2048) return fail(PathErrorCode.WEAK_KEY, `${role} ${label(c)} has a ${t.slice(4)}-bit RSA key; at least 2048 bits are required`);
  return undefined;
}

function criticalCheck(c: CertificateFacts, role: string): Fail | undefined {
  const shape = conformanceCheck(c, role) ?? keyCheck(c, role);
  if (shape) return shape;
  for (const oid of c.criticalExtensions) {
    if (!UNDERSTOOD.has(oid)) return fail(PathErrorCode.UNHANDLED_CRITICAL_EXTENSION, `${role} ${label(c)} has critical extension ${oid}, which this validator does not evaluate`);
  }
  return undefined;
}

function ekuAllows(c: CertificateFacts, eku: string | undefined): boolean {
  if (!eku || !c.extKeyUsage.present) return true;
  return c.extKeyUsage.oids.includes(eku) || c.extKeyUsage.oids.includes(Oid.anyExtendedKeyUsage);
}

const keyCache = new WeakMap<Buffer, KeyObject>();
function publicKey(c: CertificateFacts): KeyObject {
  let k = keyCache.get(c.spki);
  if (!k) {
    k = createPublicKey({ key: c.spki, format: 'der', type: 'spki' });
    keyCache.set(c.spki, k);
  }
  return k;
}

/** Checks `child`'s signature with `issuer`'s key. */
function signatureCheck(child: CertificateFacts, issuer: CertificateFacts): Fail | undefined {
  const alg = child.signatureAlgorithm;
  if (child.signatureHash === 'sha1') return fail(PathErrorCode.UNSUPPORTED_ALGORITHM, `${label(child)} is signed with SHA-1, which is refused`);
  let ok = false;
  try {
    const key = publicKey(issuer);
    if (alg === Oid.ed25519) ok = verify(null, child.tbs, key, child.signature);
    else if (child.signatureHash === undefined) return fail(PathErrorCode.UNSUPPORTED_ALGORITHM, `${label(child)} uses signature algorithm ${child.signatureAlgorithmName}, which is not supported`);
    else {
      const isEc = alg === Oid.ecdsaWithSha256 || alg === Oid.ecdsaWithSha384 || alg === Oid.ecdsaWithSha512;
      if (isEc !== (key.asymmetricKeyType === 'ec')) return fail(PathErrorCode.BAD_SIGNATURE, `${label(child)}: signature algorithm does not fit the issuer's ${key.asymmetricKeyType} key`);
      ok = verify(child.signatureHash, child.tbs, key, child.signature);
    }
  } catch {
    ok = false;
  }
  return ok ? undefined : fail(PathErrorCode.BAD_SIGNATURE, `the signature on ${label(child)} does not verify with the key of ${label(issuer)}`);
}

function mayIssue(child: CertificateFacts, cand: CertificateFacts): boolean {
  if (!cand.subject.equals(child.issuer)) return false;
  if (child.authorityKeyId && cand.subjectKeyId && !child.authorityKeyId.equals(cand.subjectKeyId)) return false;
  return true;
}

function isSelfIssued(c: CertificateFacts): boolean {
  return c.subject.equals(c.issuer);
}

/**
 * CA checks on an issuer; `below` counts non-self-issued intermediates under it.
 * A v1 trust anchor (no extensions at all) is taken as a CA, as RFC 5280 6.1
 * and OpenSSL allow: its authority comes from being configured as an anchor.
 */
function issuerCheck(cand: CertificateFacts, below: number, role: string, isAnchor: boolean): Fail | undefined {
  if (isAnchor && cand.version === 1) return undefined;
  if (!cand.basicConstraints.ca) return fail(PathErrorCode.ISSUER_NOT_CA, `${role} ${label(cand)} issues certificates but is not a CA (basicConstraints cA is not true)`);
  if (cand.keyUsage.present && !cand.keyUsage.keyCertSign) {
    return fail(PathErrorCode.ISSUER_NO_KEY_CERT_SIGN, `${role} ${label(cand)} issues certificates but its keyUsage lacks keyCertSign`);
  }
  if (!cand.basicConstraints.critical) {
    return fail(PathErrorCode.NONCONFORMING, `${role} ${label(cand)} is a CA whose basicConstraints is not critical (RFC 5280 4.2.1.9)`);
  }
  if (cand.subjectEmpty) return fail(PathErrorCode.NONCONFORMING, `${role} with serial ${cand.serialHex} is a CA with an empty subject (RFC 5280 4.1.2.6)`);
  if (!cand.subjectKeyId) return fail(PathErrorCode.NONCONFORMING, `${role} ${label(cand)} is a CA without subjectKeyIdentifier (RFC 5280 4.2.1.2)`);
  const pl = cand.basicConstraints.pathLen;
  if (pl !== undefined && below > pl) return fail(PathErrorCode.PATH_LEN_EXCEEDED, `${role} ${label(cand)} allows ${pl} intermediates below it, the path has ${below}`);
  return undefined;
}

/**
 * Finds and checks a path from `leaf` through `intermediates` to one of
 * `anchors` at `opts.now`. Fails closed; returns the path or the reason.
 *
 * When several candidate paths exist they are tried depth-first (anchors before
 * intermediates); if all fail, the failure reported is the one found deepest.
 */
export function verifyCertificatePath(
  leaf: CertificateFacts,
  intermediates: readonly CertificateFacts[],
  anchors: readonly CertificateFacts[],
  opts: PathValidationOptions,
): PathVerdict {
  // Certificates encode whole seconds; compare at that granularity.
  const now = Math.floor(opts.now.getTime() / 1000) * 1000;
  const maxIntermediates = opts.maxIntermediates ?? 6;
  if (!Number.isFinite(now)) return fail(PathErrorCode.TOO_COMPLEX, 'validation time is not a valid date');
  const leafProblem = timeCheck(leaf, now, 'leaf') ?? criticalCheck(leaf, 'leaf');
  if (leafProblem) return leafProblem;
  if (!ekuAllows(leaf, opts.requiredEku)) return fail(PathErrorCode.EKU_NOT_ALLOWED, `leaf ${label(leaf)} extendedKeyUsage does not allow ${opts.requiredEku}`);

  let best: { depth: number; failure: Fail } | undefined;
  let budget = 256; // signature checks; bounds pathological inputs
  const note = (depth: number, f: Fail): void => {
    if (!best || depth > best.depth) best = { depth, failure: f };
  };

  // path[0] = leaf; `below` = non-self-issued intermediates under the next issuer.
  const extend = (path: CertificateFacts[], below: number): CertificateFacts[] | undefined => {
    const child = path[path.length - 1]!;
    const depth = path.length;
    if (depth > 2 * maxIntermediates + 8) {
      note(depth, fail(PathErrorCode.TOO_COMPLEX, `no trust anchor within ${depth} certificates`));
      return undefined;
    }
    const tried = new Set<CertificateFacts>();
    const candidates: [CertificateFacts, boolean][] = [
      ...anchors.filter((a) => mayIssue(child, a)).map((a): [CertificateFacts, boolean] => [a, true]),
      ...intermediates.filter((i) => mayIssue(child, i)).map((i): [CertificateFacts, boolean] => [i, false]),
    ];
    for (const [cand, isAnchor] of candidates) {
      if (tried.has(cand) || path.some((p) => p.der.equals(cand.der))) continue;
      tried.add(cand);
      if (--budget < 0) {
        note(depth, fail(PathErrorCode.TOO_COMPLEX, 'path building gave up after too many candidates'));
        return undefined;
      }
      const role = isAnchor ? 'trust anchor' : 'intermediate';
      const problem =
        signatureCheck(child, cand) ??
        issuerCheck(cand, below, role, isAnchor) ??
        timeCheck(cand, now, role) ??
        criticalCheck(cand, role) ??
        (ekuAllows(cand, opts.requiredEku) ? undefined : fail(PathErrorCode.EKU_NOT_ALLOWED, `${role} ${label(cand)} extendedKeyUsage does not allow ${opts.requiredEku}`));
      if (problem) {
        note(depth, problem);
        continue;
      }
      if (isAnchor) return [...path, cand];
      const nextBelow = below + (isSelfIssued(cand) ? 0 : 1);
      if (nextBelow > maxIntermediates) {
        note(depth, fail(PathErrorCode.TOO_COMPLEX, `no trust anchor within ${maxIntermediates} intermediates`));
        continue;
      }
      const found = extend([...path, cand], nextBelow);
      if (found) return found;
    }
    if (candidates.length === 0) note(depth, fail(PathErrorCode.UNTRUSTED, `no issuer found for ${label(child)} among the trust anchors and intermediates`));
    return undefined;
  };

  const path = extend([leaf], 0);
  if (path) return Object.freeze({ ok: true as const, path: Object.freeze(path) });
  return best?.failure ?? fail(PathErrorCode.UNTRUSTED, `no path from ${label(leaf)} to a trust anchor`);
}
