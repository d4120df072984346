/**
 * The injector's own small CA and its serving certificate, made without a
 * Trellis CA: what the API server needs to call the webhook over TLS. The
 * CA is self-signed (EC P-256, CA:true, pathLen 0, keyCertSign) and only ever
 * signs serving certificates for the webhook's DNS names; the serving
 * certificate is EC P-256 with serverAuth. Each is built, signed, then
 * verified (issuer, signature, SANs) before it is returned, as the Trellis CA
 * does. When to renew is a pure decision (`servingCertDecision`), the current
 * time a parameter.
 */
import 'reflect-metadata';
import { X509Certificate, generateKeyPairSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { randomSerialHex } from '@trellis/shared';
import { InjectorError } from '../errors/injector-error';

x509.cryptoProvider.set(webcrypto as never);

/** A PEM certificate and its PKCS#8 PEM key. */
export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

async function newKey(): Promise<{ pem: string; web: webcrypto.CryptoKeyPair }> {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, EC, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', pair.publicKey.export({ type: 'spki', format: 'der' }), EC, true, ['verify']);
  return { pem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), web: { privateKey, publicKey } as webcrypto.CryptoKeyPair };
}

function pem(raw: ArrayBuffer): string {
  return `-----BEGIN CERTIFICATE-----\n${Buffer.from(raw).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

/** Backdating for clock skew: a minute, but never more than a tenth of the lifetime (short test lifetimes). */
function backdated(now: Date, validityMs: number): Date {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 - Math.min(60_000, Math.floor(validityMs / 10)));
}

/** Makes the webhook CA valid from `now` (minus up to a minute of skew) for `validityMs`. */
export async function makeWebhookCa(now: Date, validityMs: number): Promise<PemPair> {
  const key = await newKey();
  const notBefore = backdated(now, validityMs);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: [{ CN: [`trellis-injector-ca ${now.toISOString()}`] }, { O: ['Trellis'] }],
    notBefore,
    notAfter: new Date(now.getTime() + validityMs),
    keys: key.web,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(key.web.publicKey),
    ],
  });
  const certPem = pem(cert.rawData);
  const check = new X509Certificate(certPem);
  if (!check.ca || !check.verify(check.publicKey)) throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', 'the webhook CA just made does not verify itself');
  return { certPem, keyPem: key.pem };
}

/**
 * Issues a serving certificate for `dnsNames` (and `ipAddresses`) from `ca`,
 * valid for `validityMs` but never past the CA; checks it chains to the CA
 * and names what was asked before returning it.
 */
export async function issueServingCert(ca: PemPair, opts: { dnsNames: readonly string[]; ipAddresses?: readonly string[]; now: Date; validityMs: number }): Promise<PemPair> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', Buffer.from(ca.keyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64'), EC, false, ['sign']);
  const key = await newKey();
  const notBefore = backdated(opts.now, opts.validityMs);
  const wanted = opts.now.getTime() + opts.validityMs;
  const notAfter = new Date(Math.min(wanted, caCert.notAfter.getTime()));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: [{ CN: [opts.dnsNames[0] ?? 'trellis-injector'] }],
    issuer: caCert.subject,
    notBefore,
    notAfter,
    publicKey: key.web.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })), ...(opts.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value }))]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const certPem = pem(cert.rawData);
  const leaf = new X509Certificate(certPem);
  const issuer = new X509Certificate(ca.certPem);
  const sans = leaf.subjectAltName ?? '';
  if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey) || !opts.dnsNames.every((n) => sans.includes(`DNS:${n}`))) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', 'the serving certificate just issued does not chain to the webhook CA or lacks a requested name');
  }
  return { certPem, keyPem: key.pem };
}

/** What the stored material needs. */
export type ServingCertDecision =
  | { readonly action: 'keep' }
  | { readonly action: 'renew-cert'; readonly reason: string }
  | { readonly action: 'renew-ca'; readonly reason: string };

/** Validity windows the decision looks at. */
export interface CertWindows {
  readonly ca: { readonly notBefore: Date; readonly notAfter: Date } | null;
  readonly cert: { readonly notBefore: Date; readonly notAfter: Date; readonly dnsNames: readonly string[]; readonly issuedByCa: boolean } | null;
}

/**
 * Keep, renew the serving certificate, or renew the CA (and so the
 * certificate). Either is renewed once `renewFraction` of its lifetime has
 * passed (2/3 by default, as cert-manager does), or when missing, expired,
 * not issued by the CA, or lacking a wanted DNS name. Pure.
 */
export function servingCertDecision(w: CertWindows, wantedDnsNames: readonly string[], now: Date, renewFraction = 2 / 3): ServingCertDecision {
  const due = (v: { notBefore: Date; notAfter: Date }): boolean => now.getTime() >= v.notBefore.getTime() + renewFraction * (v.notAfter.getTime() - v.notBefore.getTime());
  if (!w.ca) return { action: 'renew-ca', reason: 'no webhook CA yet' };
  if (due(w.ca)) return { action: 'renew-ca', reason: `webhook CA due for renewal (expires ${w.ca.notAfter.toISOString()})` };
  if (!w.cert) return { action: 'renew-cert', reason: 'no serving certificate yet' };
  if (!w.cert.issuedByCa) return { action: 'renew-cert', reason: 'serving certificate not issued by the current webhook CA' };
  const missing = wantedDnsNames.filter((n) => !w.cert!.dnsNames.includes(n));
  if (missing.length > 0) return { action: 'renew-cert', reason: `serving certificate lacks ${missing.join(', ')}` };
  if (due(w.cert)) return { action: 'renew-cert', reason: `serving certificate due for renewal (expires ${w.cert.notAfter.toISOString()})` };
  return { action: 'keep' };
}
