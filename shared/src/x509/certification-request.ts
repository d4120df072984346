/**
 * PKCS#10 certification requests (RFC 2986), built one way: a
 * CertificationRequestInfo (subject, SubjectPublicKeyInfo, and the requested
 * extensions in an extensionRequest attribute), signed by whoever holds the
 * key (a node:crypto key, a file signer, an HSM), then wrapped with the
 * signature algorithm and the signature. The control plane reads requests
 * with the same extension reader as certificates (extensions.ts).
 *
 * Pure apart from {@link buildWorkloadCsr}, which signs with node:crypto.
 */
import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { bitString, boolean as derBoolean, contextImplicit, integer, namedBits, octetString, oid, sequence, set, tlv } from './der-writer';
import { Oid } from './oids';

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const UTF8_STRING = 0x0c;

/** The AlgorithmIdentifier DER of ecdsa-with-SHA256 (RFC 5758: no parameters). */
export const ECDSA_WITH_SHA256_DER: Buffer = sequence(oid('1.2.840.10045.4.3.2'));

/** What a request asks for. */
export interface CertificationRequestContent {
  /** RDNs in order, each one attribute (OID, UTF8String value); empty or absent for an empty subject. */
  readonly subject?: ReadonlyArray<readonly [string, string]>;
  /** The SubjectPublicKeyInfo DER of the key the request is for. */
  readonly spkiDer: Buffer;
  /** Requested extensions, each from {@link encodeExtension}; none: no extensionRequest attribute. */
  readonly extensions?: readonly Buffer[];
}

/** One DER `Extension` ({extnID, critical, extnValue}); `critical` false is omitted, as DER requires. */
export function encodeExtension(extnId: string, critical: boolean, valueDer: Buffer): Buffer {
  return sequence(oid(extnId), ...(critical ? [derBoolean(true)] : []), octetString(valueDer));
}

/** A subjectAltName extension holding these URIs (non-critical). */
export function uriSanExtension(uris: readonly string[]): Buffer {
  return encodeExtension(Oid.subjectAltName, false, sequence(...uris.map((u) => contextImplicit(6, Buffer.from(u, 'ascii')))));
}

/**
 * The extensions a Trellis intermediate requests: basicConstraints CA:true
 * pathLen 0 and keyUsage keyCertSign + cRLSign (both critical), and the URI
 * SAN `spiffe://<trustDomain>`.
 */
export function intermediateCaExtensions(trustDomain: string): Buffer[] {
  return [
    encodeExtension(Oid.basicConstraints, true, sequence(derBoolean(true), integer(0))),
    encodeExtension(Oid.keyUsage, true, namedBits([5, 6])), // keyCertSign, cRLSign
    uriSanExtension([`spiffe://${trustDomain}`]),
  ];
}

/** The DER CertificationRequestInfo (version 0) for `content`: the bytes to sign. */
export function encodeCertificationRequestInfo(content: CertificationRequestContent): Buffer {
  const subject = sequence(...(content.subject ?? []).map(([type, value]) => set(sequence(oid(type), tlv(UTF8_STRING, Buffer.from(value, 'utf8'))))));
  const exts = content.extensions ?? [];
  const attributes = exts.length === 0 ? [] : [sequence(oid(EXTENSION_REQUEST), set(sequence(...exts)))];
  return sequence(integer(0), subject, content.spkiDer, tlv(0xa0, ...attributes));
}

/** The DER CertificationRequest: the signed info, the algorithm it was signed with, and the signature. */
export function encodeCertificationRequest(info: Buffer, algorithmIdentifierDer: Buffer, signature: Buffer): Buffer {
  return sequence(info, algorithmIdentifierDer, bitString(signature));
}

/**
 * A workload's CSR: empty subject, `uriSan` as the only URI SAN (omit for
 * none), signed ecdsa-with-SHA256 with `privateKey` (an EC P-256 key).
 * Synchronous; the CA decides everything else about the certificate.
 */
export function buildWorkloadCsr(privateKey: KeyObject, spkiDer: Buffer, uriSan?: string): Buffer {
  const info = encodeCertificationRequestInfo({ spkiDer, extensions: uriSan === undefined ? [] : [uriSanExtension([uriSan])] });
  return encodeCertificationRequest(info, ECDSA_WITH_SHA256_DER, cryptoSign('sha256', info, privateKey));
}
