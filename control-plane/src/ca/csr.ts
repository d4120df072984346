/**
 * PKCS#10 certificate signing requests, read for the issuance hot path: a
 * minimal DER walk that finds the key, the requested URI SANs and any CA
 * request, then checks the CSR's own signature with node:crypto.
 *
 * The CSR is only evidence that the requester holds the key. What it asks
 * for is never copied into a certificate: the CA issues the identity it was
 * told to authorize and uses the CSR's names only to refuse a mismatch.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { CaError, CaErrorCode } from './ca-error';
import { expectTlv, oidEquals, oidValue, readTlv } from './der-walk';
import { decodeOid } from './certificate-fields';
import { describeKey, publicKeyFromSpki, SIGNATURE_ALGORITHMS } from './key-types';
import { pemBlock } from './pem';

/** What the CA learns from a CSR whose signature verified. */
export interface ParsedCsr {
  /** SubjectPublicKeyInfo DER, copied byte for byte into the certificate. */
  spkiDer: Buffer;
  publicKey: KeyObject;
  /** `ec-p256`, `ec-p384` or `rsa-<bits>`. */
  keyType: string;
  /** URI SANs the CSR asks for (usually zero or one). */
  uris: string[];
  /** True when the CSR asks for basicConstraints CA:true. */
  requestsCa: boolean;
  /** Name of the algorithm the CSR was signed with. */
  signatureAlgorithm: string;
}

const EXTENSION_REQUEST = oidValue('1.2.840.113549.1.9.14');
const SUBJECT_ALT_NAME = oidValue('2.5.29.17');
const BASIC_CONSTRAINTS = oidValue('2.5.29.19');
const CSR_LABELS = ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'] as const;

/**
 * Parses a CSR given as DER or PEM and verifies its self-signature.
 * Fails closed: BAD_PEM / BAD_DER for malformed input, UNSUPPORTED_KEY for
 * keys and algorithms outside the profile, BAD_CSR_SIGNATURE when the
 * signature does not verify.
 */
export function parseCsr(input: Buffer | string, source = 'CSR'): ParsedCsr {
  const der = toDer(input, source);
  const req = expectTlv(der, 0, der.length, 0x30, `${source} CertificationRequest`);
  if (req.end !== der.length) throw new CaError(CaErrorCode.BAD_DER, `malformed DER in ${source}: trailing bytes`, { field: source });
  const cri = expectTlv(der, req.valueStart, req.end, 0x30, `${source} certificationRequestInfo`);
  const alg = expectTlv(der, cri.end, req.end, 0x30, `${source} signatureAlgorithm`);
  const sig = expectTlv(der, alg.end, req.end, 0x03, `${source} signature`);

  const version = expectTlv(der, cri.valueStart, cri.end, 0x02, `${source} version`);
  if (version.end - version.valueStart !== 1 || der[version.valueStart] !== 0) {
    throw new CaError(CaErrorCode.BAD_DER, `malformed DER in ${source} version: only v1 (0) CSRs exist`, { field: `${source} version` });
  }
  const subject = expectTlv(der, version.end, cri.end, 0x30, `${source} subject`);
  const spki = expectTlv(der, subject.end, cri.end, 0x30, `${source} subjectPKInfo`);
  const spkiDer = der.subarray(spki.start, spki.end);

  const uris: string[] = [];
  let requestsCa = false;
  if (spki.end < cri.end) {
    const attrs = expectTlv(der, spki.end, cri.end, 0xa0, `${source} attributes`);
    let p = attrs.valueStart;
    while (p < attrs.end) {
      const attr = expectTlv(der, p, attrs.end, 0x30, `${source} attribute`);
      const type = expectTlv(der, attr.valueStart, attr.end, 0x06, `${source} attribute type`);
      if (oidEquals(der, type, EXTENSION_REQUEST)) {
        const set = expectTlv(der, type.end, attr.end, 0x31, `${source} extensionRequest`);
        let q = set.valueStart;
        while (q < set.end) {
          const exts = expectTlv(der, q, set.end, 0x30, `${source} extensionRequest extensions`);
          let r = exts.valueStart;
          while (r < exts.end) {
            const ext = expectTlv(der, r, exts.end, 0x30, `${source} requested extension`);
            const id = expectTlv(der, ext.valueStart, ext.end, 0x06, `${source} requested extension id`);
            let v = readTlv(der, id.end, ext.end, `${source} requested extension`);
            if (v.tag === 0x01) v = readTlv(der, v.end, ext.end, `${source} requested extension value`);
            if (v.tag !== 0x04) throw new CaError(CaErrorCode.BAD_DER, `malformed DER in ${source} requested extension: extnValue is not an OCTET STRING`, { field: source });
            if (oidEquals(der, id, SUBJECT_ALT_NAME)) readUris(der, v.valueStart, v.end, source, uris);
            else if (oidEquals(der, id, BASIC_CONSTRAINTS)) requestsCa = requestsCa || readCaFlag(der, v.valueStart, v.end, source);
            r = ext.end;
          }
          q = exts.end;
        }
      }
      p = attr.end;
    }
  }

  const algOid = expectTlv(der, alg.valueStart, alg.end, 0x06, `${source} signature algorithm`);
  const algorithm = SIGNATURE_ALGORITHMS[decodeOid(der, algOid)];
  if (!algorithm) {
    throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${source}: signature algorithm ${decodeOid(der, algOid)} is not supported (ECDSA or RSA PKCS#1 v1.5 with SHA-2)`, { field: `${source} signatureAlgorithm` });
  }
  if (sig.end - sig.valueStart < 2 || der[sig.valueStart] !== 0) {
    throw new CaError(CaErrorCode.BAD_DER, `malformed DER in ${source} signature: BIT STRING with unused bits`, { field: `${source} signature` });
  }

  let publicKey: KeyObject;
  try {
    publicKey = publicKeyFromSpki(spkiDer);
  } catch (err) {
    throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${source}: the public key cannot be loaded (${(err as Error).message})`, { field: `${source} subjectPKInfo` }, { cause: err });
  }
  const { keyType } = describeKey(publicKey, `${source} public key`);
  const family = publicKey.asymmetricKeyType === 'ec' ? 'ecdsa' : 'sha';
  if (!algorithm.name.startsWith(family)) {
    throw new CaError(CaErrorCode.BAD_CSR_SIGNATURE, `${source}: signature algorithm ${algorithm.name} does not fit a ${keyType} key`, { field: `${source} signatureAlgorithm` });
  }
  let ok = false;
  try {
    ok = cryptoVerify(algorithm.hash, der.subarray(cri.start, cri.end), publicKey, der.subarray(sig.valueStart + 1, sig.end));
  } catch {
    ok = false;
  }
  if (!ok) throw new CaError(CaErrorCode.BAD_CSR_SIGNATURE, `${source}: the CSR's signature does not verify with the key it carries`, { field: `${source} signature` });
  return { spkiDer, publicKey, keyType, uris, requestsCa, signatureAlgorithm: algorithm.name };
}

function toDer(input: Buffer | string, source: string): Buffer {
  if (typeof input !== 'string' && input.length > 0 && input[0] === 0x30) return input;
  const text = typeof input === 'string' ? input : input.toString('latin1');
  if (text.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: empty input`, { file: source });
  return pemBlock(text, CSR_LABELS, source);
}

function readUris(der: Buffer, start: number, end: number, source: string, out: string[]): void {
  const names = expectTlv(der, start, end, 0x30, `${source} subjectAltName`);
  let p = names.valueStart;
  while (p < names.end) {
    const n = readTlv(der, p, names.end, `${source} subjectAltName entry`);
    if (n.tag === 0x86) out.push(der.toString('utf8', n.valueStart, n.end));
    p = n.end;
  }
}

function readCaFlag(der: Buffer, start: number, end: number, source: string): boolean {
  const bc = expectTlv(der, start, end, 0x30, `${source} basicConstraints`);
  if (bc.valueStart === bc.end) return false;
  const first = readTlv(der, bc.valueStart, bc.end, `${source} basicConstraints cA`);
  return first.tag === 0x01 && der[first.valueStart] !== 0;
}
