/**
 * An independent test CA built the slow, obvious way with @peculiar/x509.
 *
 * It is deliberately not Trellis's CA: tests use it as an oracle and to craft
 * certificates our CA would never issue (wrong trust domain, CA:true leaves,
 * missing URI SAN, expired). Keys are generated at run time, never committed.
 */
import 'reflect-metadata';
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { randomSerialHex } from '@trellis/shared';

x509.cryptoProvider.set(webcrypto as never);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestKeyPair {
  keys: webcrypto.CryptoKeyPair;
  /** PKCS#8 PEM of the private key (test use only). */
  keyPem: string;
}

export interface TestCert {
  cert: x509.X509Certificate;
  pem: string;
  key: TestKeyPair;
}

export interface LeafOptions {
  /** URI SANs; default one: the given spiffeId. Pass [] for none. */
  uris?: string[];
  dnsNames?: string[];
  notBefore?: Date;
  notAfter?: Date;
  ca?: boolean;
  keyUsage?: number;
  extKeyUsage?: string[];
  serial?: string;
}

/** Generates an EC P-256 key pair. */
export async function generateTestKey(): Promise<TestKeyPair> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
  return { keys, keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}


/** A root + intermediate + leaf factory for one trust domain. */
export class TestCa {
  private constructor(
    readonly trustDomain: string,
    readonly root: TestCert,
    readonly intermediate: TestCert,
  ) {}

  /** Creates a root (10 y) and an intermediate (1 y, pathLen 0) for `trustDomain`. */
  static async create(trustDomain = 'example.org', opts: { notBefore?: Date; notAfter?: Date } = {}): Promise<TestCa> {
    const nb = opts.notBefore ?? new Date(Date.now() - 3600_000);
    const rootKey = await generateTestKey();
    const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerialHex(),
      name: `CN=Test Root ${trustDomain}, O=Trellis Test`,
      notBefore: nb,
      notAfter: new Date(nb.getTime() + 10 * 365 * 86400_000),
      keys: rootKey.keys,
      signingAlgorithm: EC,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(rootKey.keys.publicKey),
      ],
    });
    const root: TestCert = { cert: rootCert, pem: rootCert.toString('pem'), key: rootKey };
    const intKey = await generateTestKey();
    const intCert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: `CN=Test Intermediate ${trustDomain}, O=Trellis Test`,
      issuer: rootCert.subject,
      notBefore: nb,
      notAfter: opts.notAfter ?? new Date(nb.getTime() + 365 * 86400_000),
      publicKey: intKey.keys.publicKey,
      signingKey: rootKey.keys.privateKey,
      signingAlgorithm: EC,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(intKey.keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(rootCert),
      ],
    });
    return new TestCa(trustDomain, root, { cert: intCert, pem: intCert.toString('pem'), key: intKey });
  }

  /** Issues a leaf for `spiffeId` (or whatever `opts` says), signed by the intermediate. */
  async issueLeaf(spiffeId: string, opts: LeafOptions = {}): Promise<TestCert & { chainPem: string }> {
    const key = await generateTestKey();
    const nb = opts.notBefore ?? new Date(Date.now() - 60_000);
    const uris = opts.uris ?? [spiffeId];
    const names: x509.JsonGeneralName[] = [
      ...uris.map((u) => ({ type: 'url' as const, value: u })),
      ...(opts.dnsNames ?? []).map((d) => ({ type: 'dns' as const, value: d })),
    ];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true),
      new x509.KeyUsagesExtension(opts.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(opts.extKeyUsage ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(key.keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(this.intermediate.cert),
    ];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, true));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: opts.serial ?? randomSerialHex(),
      subject: '',
      issuer: this.intermediate.cert.subject,
      notBefore: nb,
      notAfter: opts.notAfter ?? new Date(nb.getTime() + 3600_000),
      publicKey: key.keys.publicKey,
      signingKey: this.intermediate.key.keys.privateKey,
      signingAlgorithm: EC,
      extensions,
    });
    const pem = cert.toString('pem');
    return { cert, pem, key, chainPem: pem + '\n' + this.intermediate.pem + '\n' };
  }
}

/** Parses a PEM with Node's own X509Certificate (a second, independent parser). */
export function nodeCert(pem: string): NodeX509 {
  return new NodeX509(pem);
}
