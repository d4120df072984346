/**
 * CSR builders for CA tests: in-process with @peculiar/x509 (fast, any
 * extensions) and through the openssl binary (an independent encoder, and
 * key types WebCrypto lacks). Keys are generated per run, never committed.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { openssl } from '@trellis/testkit';

x509.cryptoProvider.set(webcrypto as never);

export type TestKeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-1024' | 'rsa-2048' | 'rsa-3072';

export interface CsrOptions {
  keyType?: TestKeyType;
  uris?: string[];
  dnsNames?: string[];
  ca?: boolean;
  /** Request the subjectAltName extension a second time, holding these URIs (RFC 5280 4.2 forbids it). */
  secondSanUris?: string[];
}

export interface TestCsr {
  der: Buffer;
  pem: string;
  keyPem: string;
  publicKey: webcrypto.CryptoKey;
  keys: webcrypto.CryptoKeyPair;
}

function algorithms(t: TestKeyType): { gen: Parameters<typeof webcrypto.subtle.generateKey>[0]; sign: { name: string; hash?: string } } {
  switch (t) {
    case 'ec-p256':
      return { gen: { name: 'ECDSA', namedCurve: 'P-256' } as never, sign: { name: 'ECDSA', hash: 'SHA-256' } };
    case 'ec-p384':
      return { gen: { name: 'ECDSA', namedCurve: 'P-384' } as never, sign: { name: 'ECDSA', hash: 'SHA-384' } };
    case 'ec-p521':
      return { gen: { name: 'ECDSA', namedCurve: 'P-521' } as never, sign: { name: 'ECDSA', hash: 'SHA-512' } };
    default: {
      const bits = Number(t.slice(4));
      return {
        gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as never,
        sign: { name: 'RSASSA-PKCS1-v1_5' },
      };
    }
  }
}

/** A CSR signed by a fresh key of `keyType` (default EC P-256). */
export async function makeCsr(opts: CsrOptions = {}): Promise<TestCsr> {
  const a = algorithms(opts.keyType ?? 'ec-p256');
  const keys = (await webcrypto.subtle.generateKey(a.gen as never, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const extensions: x509.Extension[] = [];
  const names: x509.JsonGeneralName[] = [
    ...(opts.uris ?? []).map((u) => ({ type: 'url' as const, value: u })),
    ...(opts.dnsNames ?? []).map((d) => ({ type: 'dns' as const, value: d })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  if (opts.ca) extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
  if (opts.secondSanUris) extensions.push(new x509.SubjectAlternativeNameExtension(opts.secondSanUris.map((u) => ({ type: 'url' as const, value: u }))));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=workload', keys, signingAlgorithm: a.sign, extensions });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    der: Buffer.from(csr.rawData),
    pem: csr.toString('pem'),
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
    publicKey: keys.publicKey,
    keys,
  };
}

/** A CSR made by the openssl binary with `-newkey <spec>` (e.g. `ed25519`, `ec -pkeyopt ec_paramgen_curve:P-256`). */
export function opensslCsr(dir: string, name: string, newkey: string[], subjectAltName?: string): { pemPath: string; pem: string } {
  const keyPath = join(dir, `${name}.key`);
  const pemPath = join(dir, `${name}.csr`);
  const args = ['req', '-new', '-nodes', ...newkey, '-keyout', keyPath, '-subj', '/CN=workload', '-out', pemPath];
  if (subjectAltName) args.push('-addext', `subjectAltName=${subjectAltName}`);
  const r = openssl(args);
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  return { pemPath, pem: readFileSync(pemPath, 'utf8') };
}
