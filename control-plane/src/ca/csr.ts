/**
 * PKCS#10 certificate signing requests, read for the issuance hot path: a
 * minimal DER walk that finds the key, the requested URI SANs and any CA
 * request, then checks the CSR's own signature: with the optional native
 * verifier for uncompressed P-256/P-384 keys (no KeyObject import, see
 * native-ecdsa.ts), with node:crypto for everything else or when the addon
 * is absent. Both paths give the same verdict and the same error codes.
 *
 * The CSR is only evidence that the requester holds the key. What it asks
 * for is never copied into a certificate: the CA issues the identity it was
 * told to authorize and uses the CSR's names only to refuse a mismatch.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { der, DerError, DerErrorCode, readExtensions, summariseExtensions, X509Error, X509ErrorCode, type ExtensionFacts } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import { describeKey, ecPointOfSpki, publicKeyFromSpki, SIGNATURE_ALGORITHMS } from './key-types';
import { defaultNativeEcdsaVerify, NATIVE_HASH, type NativeEcdsaVerify } from './native-ecdsa';
import { pemBlock } from './pem';

/** What the CA learns from a CSR whose signature verified. */
export interface ParsedCsr {
  /** SubjectPublicKeyInfo DER, copied byte for byte into the certificate. */
  spkiDer: Buffer;
  /** The subject Name DER as requested (a workload's is empty; an intermediate's names it). */
  subjectDer: Buffer;
  /** The key as a KeyObject; built on first access (the native path never needs one). */
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

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const CSR_LABELS = ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'] as const;

/** How {@link parseCsr} checks signatures. */
export interface CsrVerifyOptions {
  /**
   * The native ECDSA verifier: undefined = the addon if it is built and
   * passes its self-test, null = always node:crypto.
   */
  nativeVerify?: NativeEcdsaVerify | null;
}

/**
 * Parses a CSR given as DER or PEM and verifies its self-signature.
 * Fails closed: BAD_PEM / BAD_DER for malformed input, UNSUPPORTED_KEY for
 * keys and algorithms outside the profile, BAD_CSR_SIGNATURE when the
 * signature does not verify.
 */
export function parseCsr(input: Buffer | string, source = 'CSR', options: CsrVerifyOptions = {}): ParsedCsr {
  const bytes = toDer(input, source);
  let fields: CsrFields;
  try {
    fields = readCsrFields(bytes, source);
  } catch (err) {
    if (err instanceof DerError) {
      throw new CaError(CaErrorCode.BAD_DER, `${source}: malformed DER (${err.message})`, { field: err.details.field ?? source, derCode: err.code }, { cause: err });
    }
    if (err instanceof X509Error) {
      throw new CaError(CaErrorCode.BAD_DER, `${source}: ${err.message}`, { field: (err.details.extension as string | undefined) ?? source, derCode: err.code }, { cause: err });
    }
    throw err;
  }
  const algorithm = SIGNATURE_ALGORITHMS[fields.signatureAlgorithmOid];
  if (!algorithm) {
    throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${source}: signature algorithm ${fields.signatureAlgorithmOid} is not supported (ECDSA or RSA PKCS#1 v1.5 with SHA-2)`, { field: `${source} signatureAlgorithm` });
  }
  const native = options.nativeVerify === undefined ? defaultNativeEcdsaVerify() : options.nativeVerify;
  const ec = native && algorithm.name.startsWith('ecdsa') ? ecPointOfSpki(fields.spkiDer) : undefined;
  // The addon answers 1, 0 or -1; anything else (it threw) leaves the verdict to node:crypto below.
  const verdict = native && ec ? nativeVerdict(native, ec.curve, ec.point, NATIVE_HASH[algorithm.hash], fields.signedDer, fields.signature) : undefined;
  if (ec && verdict !== undefined) {
    if (verdict === -1) {
      throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `${source}: the public key cannot be loaded (the ${ec.crv} point is not on the curve)`, { field: `${source} subjectPKInfo` });
    }
    if (verdict !== 1) throw new CaError(CaErrorCode.BAD_CSR_SIGNATURE, `${source}: the CSR's signature does not verify with the key it carries`, { field: `${source} signature` });
    const spkiDer = fields.spkiDer;
    let key: KeyObject | undefined;
    return {
      spkiDer,
      subjectDer: fields.subjectDer,
      get publicKey(): KeyObject {
        return (key ??= publicKeyFromSpki(spkiDer));
      },
      keyType: ec.keyType,
      uris: fields.uris,
      requestsCa: fields.requestsCa,
      signatureAlgorithm: algorithm.name,
    };
  }
  let publicKey: KeyObject;
  try {
    publicKey = publicKeyFromSpki(fields.spkiDer);
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
    ok = cryptoVerify(algorithm.hash, fields.signedDer, publicKey, fields.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new CaError(CaErrorCode.BAD_CSR_SIGNATURE, `${source}: the CSR's signature does not verify with the key it carries`, { field: `${source} signature` });
  return { spkiDer: fields.spkiDer, subjectDer: fields.subjectDer, publicKey, keyType, uris: fields.uris, requestsCa: fields.requestsCa, signatureAlgorithm: algorithm.name };
}

function nativeVerdict(native: NativeEcdsaVerify, ...args: Parameters<NativeEcdsaVerify>): -1 | 0 | 1 | undefined {
  try {
    const v = native(...args);
    return v === 1 || v === 0 || v === -1 ? v : undefined;
  } catch {
    return undefined;
  }
}

interface CsrFields {
  signedDer: Buffer;
  spkiDer: Buffer;
  subjectDer: Buffer;
  uris: string[];
  requestsCa: boolean;
  signatureAlgorithmOid: string;
  signature: Buffer;
}

/** The DER walk; throws DerError (wrapped by the caller) on any malformation. */
function readCsrFields(buf: Buffer, source: string): CsrFields {
  const req = der.readWhole(buf, 0x30, `${source} CertificationRequest`);
  const cri = der.expectTlv(buf, req.start, 0x30, 'certificationRequestInfo', req.end);
  const alg = der.expectTlv(buf, cri.end, 0x30, 'signatureAlgorithm', req.end);
  const sig = der.expectTlv(buf, alg.end, 0x03, 'signature', req.end);
  if (sig.end !== req.end) throw new DerError(DerErrorCode.TRAILING_DATA, `DER: ${source}: data after the signature`, { field: 'signature', offset: sig.end });

  const version = der.expectTlv(buf, cri.start, 0x02, 'version', cri.end);
  if (der.decodeSmallInteger(buf, version) !== 0) throw new DerError(DerErrorCode.INTEGER_OUT_OF_RANGE, 'DER: CSR version must be 0 (v1)', { field: 'version' });
  const subject = der.expectTlv(buf, version.end, 0x30, 'subject', cri.end);
  const spki = der.expectTlv(buf, subject.end, 0x30, 'subjectPKInfo', cri.end);

  const requested: ExtensionFacts[] = [];
  if (spki.end < cri.end) {
    const attrs = der.expectTlv(buf, spki.end, 0xa0, 'attributes', cri.end);
    der.forEachChild(buf, attrs, (attr) => {
      if (attr.tag !== 0x30) throw new DerError(DerErrorCode.UNEXPECTED_TAG, 'DER: attribute is not a SEQUENCE', { field: 'attribute', offset: attr.offset });
      const type = der.expectTlv(buf, attr.start, 0x06, 'attribute type', attr.end);
      if (der.decodeOid(buf, type) !== EXTENSION_REQUEST) return;
      const values = der.expectTlv(buf, type.end, 0x31, 'extensionRequest', attr.end);
      der.forEachChild(buf, values, (exts) => {
        if (exts.tag !== 0x30) throw new DerError(DerErrorCode.UNEXPECTED_TAG, 'DER: extensionRequest value is not a SEQUENCE', { field: 'extensionRequest', offset: exts.offset });
        // The one extension reader, as for certificates: an extension twice or a malformed SAN is refused, not merged or skipped.
        requested.push(...readExtensions(buf, exts, 'certificate request'));
      });
    });
  }

  if (requested.some((a, i) => requested.findIndex((b) => b.oid === a.oid) !== i)) {
    const twice = requested.find((a, i) => requested.findIndex((b) => b.oid === a.oid) !== i)!.oid;
    throw new X509Error(X509ErrorCode.DUPLICATE_EXTENSION, `certificate request has extension ${twice} twice (RFC 5280 4.2)`, { extension: twice });
  }
  const asked = summariseExtensions(requested, 'certificate request');
  const uris = [...asked.subjectAltName.uris];
  const requestsCa = asked.basicConstraints.ca;
  const algOid = der.expectTlv(buf, alg.start, 0x06, 'signature algorithm', alg.end);
  return {
    signedDer: der.encoded(buf, cri),
    spkiDer: der.encoded(buf, spki),
    subjectDer: der.encoded(buf, subject),
    uris,
    requestsCa,
    signatureAlgorithmOid: der.decodeOid(buf, algOid),
    signature: der.decodeBitString(buf, sig).bytes,
  };
}

function toDer(input: Buffer | string, source: string): Buffer {
  if (typeof input !== 'string' && input.length > 0 && input[0] === 0x30) return input;
  const text = typeof input === 'string' ? input : input.toString('latin1');
  if (text.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: empty input`, { file: source });
  return pemBlock(text, CSR_LABELS, source);
}
