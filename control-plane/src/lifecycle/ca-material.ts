/**
 * Building CA certificates for the lifecycle: a fresh root, an intermediate
 * CSR, and an intermediate signed from a CSR by a root. Every certificate is
 * built, signed, then verified against the signer's public key before it is
 * returned (the CA's own "sign then check" rule).
 *
 * Not the hot path, so @peculiar/x509 builds the structures.
 */
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, generateKeyPairSync, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { parseTrustDomain, randomSerialHex, trustDomainOfCaUriSans, derToPem } from '@trellis/shared';
import { describeKey, generationParams, type CaKeyType } from '../ca/key-types';
import { pemBlock } from '../ca/pem';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { createIntermediateCsr as buildIntermediateCsr } from '../ca/intermediate-csr';
import { createFileSigner } from '../ca/signer';
import { CaError, CaErrorCode } from '../ca/ca-error';
import { parseCsr, type ParsedCsr } from '../ca/csr';

const DAY_MS = 86_400_000;

/** A key pair usable both by node:crypto and by @peculiar/x509. */
export interface CaKeyPair {
  /** PKCS#8 PEM of the private key; write it 0600, never log it. */
  readonly pem: string;
  readonly keyType: string;
  readonly web: webcrypto.CryptoKeyPair;
  readonly publicKey: KeyObject;
}

/** Generates a CA key of `type`. */
export async function generateCaKey(type: CaKeyType): Promise<CaKeyPair> {
  const p = generationParams(type);
  const pair = p.kind === 'ec' ? generateKeyPairSync('ec', { namedCurve: p.namedCurve }) : generateKeyPairSync('rsa', { modulusLength: p.modulusLength });
  return importPrivateKey(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 'generated key');
}

/** Reads a PEM private key into a {@link CaKeyPair}; UNSUPPORTED_KEY / BAD_PEM from the CA family when unusable. */
export async function importPrivateKey(pem: string, source: string): Promise<CaKeyPair> {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${source}: not a readable PEM private key`, { file: source }, { cause: err });
  }
  const { keyType } = describeKey(key, source);
  const alg = webAlgorithm(key);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const publicKey = createPublicKey(key);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']);
  const pub = await webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']);
  return { pem: derToPem(pkcs8, 'PRIVATE KEY'), keyType, web: { privateKey, publicKey: pub } as webcrypto.CryptoKeyPair, publicKey };
}

function webAlgorithm(key: KeyObject): { name: string; namedCurve?: string; hash?: string } {
  if (key.asymmetricKeyType === 'ec') {
    return { name: 'ECDSA', namedCurve: key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256' };
  }
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

function signingAlgorithm(keyType: string): { name: string; hash: string } {
  if (keyType === 'ec-p384') return { name: 'ECDSA', hash: 'SHA-384' };
  if (keyType.startsWith('ec-')) return { name: 'ECDSA', hash: 'SHA-256' };
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

function checkSignedBy(certDer: ArrayBuffer, issuer: KeyObject, what: string): string {
  const cert = new X509Certificate(Buffer.from(certDer));
  if (!cert.verify(issuer)) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${what}: the freshly signed certificate does not verify with the signing key`, {});
  return derToPem(Buffer.from(certDer), 'CERTIFICATE');
}

/** Options for {@link createRootCertificate}. */
export interface RootOptions {
  trustDomain: string;
  key: CaKeyPair;
  now: Date;
  validityDays?: number;
  /** Distinguishes roots of one trust domain in their subject, e.g. the rotation's start date. */
  generation?: string;
}

/** A self-signed root (CA:true, keyCertSign + cRLSign), PEM. */
export async function createRootCertificate(o: RootOptions): Promise<string> {
  const td = parseTrustDomain(o.trustDomain);
  const notBefore = new Date(Math.floor(o.now.getTime() / 1000) * 1000 - 60_000);
  const cn = o.generation ? `Trellis Root CA ${td} ${o.generation}` : `Trellis Root CA ${td}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: [{ CN: [cn] }, { O: ['Trellis'] }],
    notBefore,
    notAfter: new Date(notBefore.getTime() + (o.validityDays ?? 3650) * DAY_MS),
    keys: o.key.web,
    signingAlgorithm: signingAlgorithm(o.key.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(o.key.web.publicKey),
    ],
  });
  return checkSignedBy(cert.rawData, o.key.publicKey, 'root');
}

/** A CSR for a Trellis intermediate (CA:true pathLen 0, URI SAN `spiffe://<td>`), PEM. */
export async function createIntermediateCsr(trustDomain: string, key: CaKeyPair, label?: string): Promise<string> {
  const td = parseTrustDomain(trustDomain);
  return derToPem(await buildIntermediateCsr(createFileSigner(key.pem), td, label), 'CERTIFICATE REQUEST');
}

/** What {@link signIntermediateCsr} needs from the root. */
export interface RootSigner {
  certPem: string;
  key: CaKeyPair;
}

/** A signed intermediate and the facts about it. */
export interface SignedIntermediate {
  certPem: string;
  trustDomain: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Signs a Trellis intermediate from `csrPem` with the root. Fails closed
 * with BAD_INTERMEDIATE_CSR unless the CSR's signature verifies and it
 * carries exactly one URI SAN that is a bare `spiffe://<td>` (and, when
 * `expectTrustDomain` is given, that trust domain). The certificate is the
 * CA's profile regardless of what else the CSR asks for: CA:true pathLen 0,
 * keyCertSign + cRLSign, the SAN, SKI and AKI; notAfter capped at the root's.
 */
export async function signIntermediateCsr(root: RootSigner, csrPem: string, o: { now: Date; validityDays?: number; source?: string; expectTrustDomain?: string }): Promise<SignedIntermediate> {
  const source = o.source ?? 'CSR';
  const bad = (msg: string, cause?: unknown): LifecycleError =>
    new LifecycleError(LifecycleErrorCode.BAD_INTERMEDIATE_CSR, `${source}: ${msg}`, { file: source }, cause ? { cause } : undefined);
  // The CA's one CSR reader (ca/csr.ts): signature, key profile and requested extensions, as for every SVID request.
  let csr: ParsedCsr;
  try {
    csr = parseCsr(csrPem, source);
  } catch (err) {
    if (err instanceof CaError && err.code === CaErrorCode.BAD_CSR_SIGNATURE) throw bad('the CSR signature does not verify', err);
    throw bad(`not a usable PKCS#10 certificate request (${(err as Error).message})`, err);
  }
  const tdOfCsr = trustDomainOfCaUriSans(csr.uris, 'the requested');
  if (!tdOfCsr.ok) throw bad(tdOfCsr.reason);
  const td = tdOfCsr.trustDomain;
  if (o.expectTrustDomain !== undefined && td !== o.expectTrustDomain) throw bad(`asks for trust domain ${td}, expected ${o.expectTrustDomain}`);

  const rootCert = new x509.X509Certificate(pemBlock(root.certPem, ['CERTIFICATE'], 'root certificate'));
  const notBefore = new Date(Math.floor(o.now.getTime() / 1000) * 1000 - 60_000);
  const wanted = new Date(notBefore.getTime() + (o.validityDays ?? 365) * DAY_MS);
  const notAfter = wanted < rootCert.notAfter ? wanted : rootCert.notAfter;
  if (notAfter <= o.now) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `the root expired at ${rootCert.notAfter.toISOString()}`, {});
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: new x509.Name(csr.subjectDer),
    issuer: rootCert.subjectName,
    notBefore,
    notAfter,
    publicKey: csr.spkiDer,
    signingKey: root.key.web.privateKey,
    signingAlgorithm: signingAlgorithm(root.key.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }]),
      await x509.SubjectKeyIdentifierExtension.create(csr.spkiDer),
      await x509.AuthorityKeyIdentifierExtension.create(rootCert),
    ],
  });
  const certPem = checkSignedBy(cert.rawData, root.key.publicKey, 'intermediate');
  return { certPem, trustDomain: td, notBefore, notAfter };
}
