/**
 * Reading CA certificates and checking that an intermediate chains to a
 * trusted root with a CA profile. Used when loading a CA dir and when
 * importing an intermediate signed by an enterprise root.
 */
import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { parseCertificate, samePublicKey, TrellisError, type CertificateFacts, derToPem } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import { subjectPublicKeyBits } from './key-types';

/** A CA certificate with the facts the CA needs about it. */
export interface CaCertificate {
  der: Buffer;
  pem: string;
  facts: CertificateFacts;
  /** Same object as `facts` (the name earlier callers used). */
  fields: CertificateFacts;
  /** URI SANs. */
  uris: readonly string[];
  x509: X509Certificate;
  /** subjectKeyIdentifier (computed from the key, RFC 5280 method 1, when the extension is absent). */
  keyId: Buffer;
  selfSigned: boolean;
}

/** Parses one certificate (DER), naming `source` in errors (BAD_DER). */
export function readCaCertificate(der: Buffer, source: string): CaCertificate {
  let facts: CertificateFacts;
  let x509: X509Certificate;
  try {
    facts = parseCertificate(der);
    x509 = new X509Certificate(der);
  } catch (err) {
    const reason = err instanceof TrellisError ? `${err.message} [${err.code}]` : (err as Error).message;
    throw new CaError(CaErrorCode.BAD_DER, `${source}: not a valid certificate (${reason})`, { file: source }, { cause: err });
  }
  const keyId = facts.subjectKeyId ?? createHash('sha1').update(subjectPublicKeyBits(facts.spki)).digest();
  const selfSigned = facts.issuer.equals(facts.subject) && safeVerify(x509, x509.publicKey);
  return { der, pem: derToPem(der, 'CERTIFICATE'), facts, fields: facts, uris: facts.subjectAltName.uris, x509, keyId, selfSigned };
}

/**
 * Checks that `intermediate` is a usable signing CA valid at `now` and that
 * it chains through `uppers` (intermediates above it, any order) to one of
 * `roots`, every link's signature verifying and every issuer being a CA.
 * Fails closed with CHAIN_INVALID naming the broken link.
 */
export function verifyCaChain(intermediate: CaCertificate, uppers: CaCertificate[], roots: CaCertificate[], now: Date): void {
  const invalid = (msg: string): never => {
    throw new CaError(CaErrorCode.CHAIN_INVALID, msg, { subject: intermediate.facts.subjectText });
  };
  if (!intermediate.facts.basicConstraints.ca) invalid('the intermediate is not a CA certificate (basicConstraints CA:true missing)');
  if (!intermediate.facts.keyUsage.keyCertSign) invalid('the intermediate lacks keyUsage keyCertSign');
  if (roots.length === 0) invalid('no root certificate was given');
  for (const r of roots) {
    if (!r.selfSigned) invalid(`root "${r.facts.subjectText}" is not self-signed`);
  }
  let current = intermediate;
  const pool = [...uppers];
  for (let depth = 0; depth < 8; depth++) {
    if (now < current.facts.notBefore || now >= current.facts.notAfter) {
      invalid(`"${current.facts.subjectText}" is not valid now (${current.facts.notBefore.toISOString()} .. ${current.facts.notAfter.toISOString()})`);
    }
    const root = roots.find((r) => r.facts.subject.equals(current.facts.issuer) && safeVerify(current.x509, r.x509.publicKey));
    if (root) {
      if (now < root.facts.notBefore || now >= root.facts.notAfter) invalid(`root "${root.facts.subjectText}" is not valid now`);
      return;
    }
    const i = pool.findIndex((u) => u.facts.subject.equals(current.facts.issuer) && safeVerify(current.x509, u.x509.publicKey));
    if (i < 0) invalid(`"${current.facts.subjectText}" is not signed by any given root or chain certificate`);
    const next = pool.splice(i, 1)[0]!;
    if (!next.facts.basicConstraints.ca || !next.facts.keyUsage.keyCertSign) invalid(`chain certificate "${next.facts.subjectText}" is not a signing CA`);
    current = next;
  }
  invalid('the chain is longer than 8 certificates');
}

/** True when `key` (a public KeyObject) is the certificate's key. */
export function certificateHasKey(cert: CaCertificate, key: KeyObject): boolean {
  return samePublicKey(cert.x509.publicKey, key);
}

function safeVerify(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.verify(key);
  } catch {
    return false;
  }
}
