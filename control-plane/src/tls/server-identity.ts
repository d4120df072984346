/**
 * The control plane's own SVID, `spiffe://<td>/ns/trellis-system/sa/trellis-control-plane`:
 * a fresh key and CSR, signed by the CA it holds, rotated at half its lifetime
 * like any workload's. The key stays in this process (memory only).
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

/** The control plane's SPIFFE ID in `trustDomain`. */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/trellis-system/sa/trellis-control-plane`;
}

/**
 * True once half of the certificate's usable lifetime has passed (fails towards rotating).
 * The window starts at `installedAtMs` when that is later than notBefore: the CA back-dates
 * notBefore by a clock-skew allowance, which for a one-minute certificate would otherwise
 * put the half-way point at the moment of issue and renew it in a loop.
 */
export function shouldRotate(nowMs: number, notBefore: Date, notAfter: Date, installedAtMs = 0): boolean {
  const nb = Math.max(notBefore.getTime(), installedAtMs);
  const na = notAfter.getTime();
  if (!(na > nb)) return true;
  return nowMs >= nb + (na - nb) / 2;
}

/** A new P-256 key and a DER CSR carrying `spiffeId` as its only URI SAN. */
export async function createKeyAndCsr(spiffeId: string): Promise<{ keyPem: string; csrDer: Buffer }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: keys as never,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }])],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey);
  return { keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), csrDer: Buffer.from(csr.rawData) };
}
