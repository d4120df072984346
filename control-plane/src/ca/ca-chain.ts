/**
 * Reading CA certificates and checking that an intermediate chains to a
 * trusted root with a CA profile. Used when loading a CA dir and when
 * importing an intermediate signed by an enterprise root.
 */
import { createHash, X509Certificate, type KeyObject } from 'node:crypto';
import { CaError, CaErrorCode } from './ca-error';
import { readCertificateFields, subjectPublicKeyBits, type CertificateFields } from './certificate-fields';
import { expectTlv, readTlv } from './der-walk';
import { toPem } from './pem';

/** A CA certificate with the facts the CA needs about it. */
export interface CaCertificate {
  der: Buffer;
  pem: string;
  fields: CertificateFields;
  x509: X509Certificate;
  /** subjectKeyIdentifier (computed from the key, RFC 5280 method 1, when the extension is absent). */
  keyId: Buffer;
  /** URI SANs. */
  uris: string[];
  isCa: boolean;
  /** keyUsage has keyCertSign. */
  canSign: boolean;
  selfSigned: boolean;
}

/** Parses one certificate (DER), naming `source` in errors. */
export function readCaCertificate(der: Buffer, source: string): CaCertificate {
  const fields = readCertificateFields(der, source);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (err) {
    throw new CaError(CaErrorCode.BAD_DER, `${source}: not a certificate (${(err as Error).message})`, { file: source }, { cause: err });
  }
  let keyId: Buffer | undefined;
  let isCa = false;
  let canSign = false;
  const uris: string[] = [];
  for (const e of fields.extensions) {
    if (e.oid === '2.5.29.14') {
      const t = expectTlv(e.value, 0, e.value.length, 0x04, `${source} subjectKeyIdentifier`);
      keyId = e.value.subarray(t.valueStart, t.end);
    } else if (e.oid === '2.5.29.19') {
      const s = expectTlv(e.value, 0, e.value.length, 0x30, `${source} basicConstraints`);
      if (s.valueStart < s.end) {
        const b = readTlv(e.value, s.valueStart, s.end, `${source} basicConstraints`);
        isCa = b.tag === 0x01 && e.value[b.valueStart] !== 0;
      }
    } else if (e.oid === '2.5.29.15') {
      const b = expectTlv(e.value, 0, e.value.length, 0x03, `${source} keyUsage`);
      canSign = b.end - b.valueStart > 1 && (e.value[b.valueStart + 1]! & 0x04) !== 0;
    } else if (e.oid === '2.5.29.17') {
      const names = expectTlv(e.value, 0, e.value.length, 0x30, `${source} subjectAltName`);
      let p = names.valueStart;
      while (p < names.end) {
        const n = readTlv(e.value, p, names.end, `${source} subjectAltName`);
        if (n.tag === 0x86) uris.push(e.value.toString('utf8', n.valueStart, n.end));
        p = n.end;
      }
    }
  }
  keyId ??= createHash('sha1').update(subjectPublicKeyBits(fields.spkiDer, `${source} subjectPublicKeyInfo`)).digest();
  const selfSigned = fields.issuerDer.equals(fields.subjectDer) && safeVerify(x509, x509.publicKey);
  return { der, pem: toPem(der, 'CERTIFICATE'), fields, x509, keyId, uris, isCa, canSign, selfSigned };
}

/**
 * Checks that `intermediate` is a usable signing CA valid at `now` and that
 * it chains through `uppers` (intermediates above it, any order) to one of
 * `roots`, every link's signature verifying and every issuer being a CA.
 * Fails closed with CHAIN_INVALID naming the broken link.
 */
export function verifyCaChain(intermediate: CaCertificate, uppers: CaCertificate[], roots: CaCertificate[], now: Date): void {
  const invalid = (msg: string): never => {
    throw new CaError(CaErrorCode.CHAIN_INVALID, msg, { subject: intermediate.x509.subject });
  };
  if (!intermediate.isCa) invalid('the intermediate is not a CA certificate (basicConstraints CA:true missing)');
  if (!intermediate.canSign) invalid('the intermediate lacks keyUsage keyCertSign');
  if (roots.length === 0) invalid('no root certificate was given');
  for (const r of roots) {
    if (!r.selfSigned) invalid(`root "${r.x509.subject.replace(/\n/g, ', ')}" is not self-signed`);
  }
  let current = intermediate;
  const pool = [...uppers];
  for (let depth = 0; depth < 8; depth++) {
    if (now < current.fields.notBefore || now >= current.fields.notAfter) {
      invalid(`"${current.x509.subject.replace(/\n/g, ', ')}" is not valid now (${current.fields.notBefore.toISOString()} .. ${current.fields.notAfter.toISOString()})`);
    }
    const root = roots.find((r) => r.fields.subjectDer.equals(current.fields.issuerDer) && safeVerify(current.x509, r.x509.publicKey));
    if (root) {
      if (now < root.fields.notBefore || now >= root.fields.notAfter) invalid('the root is not valid now');
      return;
    }
    const i = pool.findIndex((u) => u.fields.subjectDer.equals(current.fields.issuerDer) && safeVerify(current.x509, u.x509.publicKey));
    if (i < 0) invalid(`"${current.x509.subject.replace(/\n/g, ', ')}" is not signed by any given root or chain certificate`);
    const next = pool.splice(i, 1)[0]!;
    if (!next.isCa || !next.canSign) invalid(`chain certificate "${next.x509.subject.replace(/\n/g, ', ')}" is not a signing CA`);
    current = next;
  }
  invalid('the chain is longer than 8 certificates');
}

/** True when `key` is the public half of the certificate's key. */
export function certificateHasKey(cert: CaCertificate, key: KeyObject): boolean {
  return cert.x509.publicKey.equals(key);
}

function safeVerify(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.verify(key);
  } catch {
    return false;
  }
}
