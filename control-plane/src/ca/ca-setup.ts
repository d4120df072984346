/**
 * Creating and installing CA material: `ca init` (a self-signed offline root
 * and an intermediate), `ca intermediate-csr` (key + CSR for an enterprise
 * root to sign) and `ca import` (install the signed intermediate).
 *
 * This is not the hot path, so certificates are built with @peculiar/x509;
 * issuance uses the pre-encoded template in svid-template.ts.
 */
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, generateKeyPairSync, webcrypto, type KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { parseTrustDomain, randomSerialHex, SpiffeIdError, trustDomainOfCaUriSans, derToPem } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';
import { certificateHasKey, readCaCertificate, verifyCaChain } from './ca-chain';
import { CA_FILES, caFileExists, readCaFiles, requireCaDir, writeCaFiles, type CaFileWrite } from './ca-dir';
import { CA_KEY_TYPES, describeKey, generationParams, type CaKeyType } from './key-types';
import { pemCertificates } from './pem';
import { createIntermediateCsr } from './intermediate-csr';
import { createFileSigner } from './signer';

const DAY_MS = 86_400_000;

/** Options of {@link initCertificateAuthority}. */
export interface InitOptions {
  /** Default `cluster.local`. */
  trustDomain?: string;
  /** Default `ec-p256`. */
  keyType?: CaKeyType;
  /** Replace an existing CA. */
  force?: boolean;
  /** Root lifetime; default 10 years. */
  rootValidityDays?: number;
  /** Intermediate lifetime; default 1 year (never past the root). */
  intermediateValidityDays?: number;
  clock?: () => Date;
}

/** What `init` / `import` produced. */
export interface CaSetupResult {
  dir: string;
  trustDomain: string;
  keyType: string;
  rootNotAfter: Date;
  intermediateNotAfter: Date;
  /** Paths written, relative to `dir`. */
  files: string[];
}

/**
 * Creates a root (self-signed, CA:true, keyCertSign + cRLSign) and an
 * intermediate signed by it (pathLen 0, URI SAN `spiffe://<td>`) in `dir`
 * (created if needed). Refuses with EXISTS when the dir already holds a CA
 * and `force` is not set; keys are 0600; all files appear at once or not at all.
 */
export async function initCertificateAuthority(dir: string, opts: InitOptions = {}): Promise<CaSetupResult> {
  const trustDomain = checkTrustDomain(opts.trustDomain ?? 'cluster.local');
  const keyType = checkKeyType(opts.keyType ?? 'ec-p256');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  refuseExisting(dir, opts.force, [CA_FILES.intermediateCert, CA_FILES.intermediateKey, CA_FILES.rootCert, CA_FILES.rootKey]);
  const now = (opts.clock ?? (() => new Date()))();
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 60_000);
  const rootNotAfter = new Date(notBefore.getTime() + (opts.rootValidityDays ?? 3650) * DAY_MS);
  const intNotAfterWanted = new Date(notBefore.getTime() + (opts.intermediateValidityDays ?? 365) * DAY_MS);
  const intermediateNotAfter = intNotAfterWanted < rootNotAfter ? intNotAfterWanted : rootNotAfter;

  const rootKey = await generateKey(keyType);
  const intKey = await generateKey(keyType);
  const alg = signingAlgorithm(keyType);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: [{ CN: [`Trellis Root CA ${trustDomain}`] }, { O: ['Trellis'] }],
    notBefore,
    notAfter: rootNotAfter,
    keys: rootKey.web,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKey.web.publicKey),
    ],
  });
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: [{ CN: [`Trellis Intermediate CA ${trustDomain}`] }, { O: ['Trellis'] }],
    issuer: root.subject,
    notBefore,
    notAfter: intermediateNotAfter,
    publicKey: intKey.web.publicKey,
    signingKey: rootKey.web.privateKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(intKey.web.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root),
    ],
  });
  const rootPem = derToPem(Buffer.from(root.rawData), 'CERTIFICATE');
  const intPem = derToPem(Buffer.from(intermediate.rawData), 'CERTIFICATE');
  const files: CaFileWrite[] = [
    { name: CA_FILES.rootKey, contents: rootKey.pem, mode: 0o600 },
    { name: CA_FILES.intermediateKey, contents: intKey.pem, mode: 0o600 },
    { name: CA_FILES.rootCert, contents: rootPem, mode: 0o644 },
    { name: CA_FILES.intermediateCert, contents: intPem, mode: 0o644 },
    { name: CA_FILES.chain, contents: intPem, mode: 0o644 },
  ];
  writeCaFiles(dir, files);
  return { dir, trustDomain, keyType, rootNotAfter, intermediateNotAfter, files: files.map((f) => f.name) };
}

/** Options of {@link writeIntermediateCsr}. */
export interface IntermediateCsrOptions {
  trustDomain?: string;
  keyType?: CaKeyType;
  /** Replace an existing intermediate key/cert. */
  force?: boolean;
}

/**
 * Generates the intermediate key (0600) and a CSR for it (CN, URI SAN
 * `spiffe://<td>`, requesting CA:true pathLen 0 and keyCertSign + cRLSign)
 * for an enterprise root to sign. Returns the CSR PEM, also written to
 * `intermediate.csr`.
 */
export async function writeIntermediateCsr(dir: string, opts: IntermediateCsrOptions = {}): Promise<{ csrPem: string; trustDomain: string; keyType: string; files: string[] }> {
  const trustDomain = checkTrustDomain(opts.trustDomain ?? 'cluster.local');
  const keyType = checkKeyType(opts.keyType ?? 'ec-p256');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  refuseExisting(dir, opts.force, [CA_FILES.intermediateCert, CA_FILES.intermediateKey]);
  const key = await generateKey(keyType);
  const csrPem = derToPem(await createIntermediateCsr(createFileSigner(key.pem), trustDomain), 'CERTIFICATE REQUEST');
  writeCaFiles(dir, [
    { name: CA_FILES.intermediateKey, contents: key.pem, mode: 0o600 },
    { name: CA_FILES.intermediateCsr, contents: csrPem, mode: 0o644 },
  ]);
  return { csrPem, trustDomain, keyType, files: [CA_FILES.intermediateKey, CA_FILES.intermediateCsr] };
}

/**
 * Installs an intermediate signed elsewhere. `certPem` is the intermediate;
 * `chainPem` holds the root(s) it chains to (self-signed) and any
 * intermediates in between. Checks, failing closed: the certificate matches
 * `intermediate.key` (KEY_MISMATCH), is a signing CA with exactly one URI SAN
 * `spiffe://<td>` and chains to a given root now (CHAIN_INVALID). Then
 * writes intermediate.pem, chain.pem and root.pem together.
 */
export function importIntermediate(dir: string, certPem: string, chainPem: string, opts: { certSource?: string; chainSource?: string; clock?: () => Date } = {}): CaSetupResult {
  const files = readCaFiles(dir, [CA_FILES.intermediateKey]);
  let key: KeyObject;
  try {
    key = createPrivateKey(files.get(CA_FILES.intermediateKey)!);
  } catch (err) {
    throw new CaError(CaErrorCode.BAD_PEM, `${join(dir, CA_FILES.intermediateKey)}: not a readable PEM private key`, { file: join(dir, CA_FILES.intermediateKey) }, { cause: err });
  }
  const { keyType } = describeKey(key, join(dir, CA_FILES.intermediateKey));
  const installed = installIntermediate(dir, createPublicKey(key), `the key in ${join(dir, CA_FILES.intermediateKey)}`, certPem, chainPem, opts);
  return {
    dir,
    trustDomain: installed.trustDomain,
    keyType,
    rootNotAfter: installed.rootNotAfter,
    intermediateNotAfter: installed.intermediateNotAfter,
    files: installed.files,
  };
}

/** What {@link installIntermediate} wrote. */
export interface InstalledIntermediate {
  trustDomain: string;
  intermediateNotAfter: Date;
  rootNotAfter: Date;
  files: string[];
}

/**
 * The checks and writes every intermediate install shares, whichever way its
 * key is held (a key file, or an HSM): the certificate is for `publicKey`
 * (KEY_MISMATCH, naming `keyName`), is a signing CA with exactly one URI SAN
 * `spiffe://<td>` and chains to a root in `chainPem` now (CHAIN_INVALID).
 * Then intermediate.pem, chain.pem and root.pem are written together.
 */
export function installIntermediate(dir: string, publicKey: KeyObject, keyName: string, certPem: string, chainPem: string, opts: { certSource?: string; chainSource?: string; clock?: () => Date } = {}): InstalledIntermediate {
  const certSource = opts.certSource ?? 'intermediate certificate';
  const chainSource = opts.chainSource ?? 'chain';
  const certDers = pemCertificates(certPem, certSource);
  if (certDers.length !== 1) throw new CaError(CaErrorCode.BAD_PEM, `${certSource}: expected exactly one certificate, found ${certDers.length}`, { file: certSource });
  const intermediate = readCaCertificate(certDers[0]!, certSource);
  if (!certificateHasKey(intermediate, publicKey)) {
    throw new CaError(CaErrorCode.KEY_MISMATCH, `${certSource} is not for ${keyName} (was it signed from this dir's intermediate.csr?)`, { file: certSource });
  }
  const chain = pemCertificates(chainPem, chainSource).map((d, i) => readCaCertificate(d, `${chainSource} certificate ${i + 1}`));
  const roots = chain.filter((c) => c.selfSigned);
  const uppers = chain.filter((c) => !c.selfSigned && !c.der.equals(intermediate.der));
  const now = (opts.clock ?? (() => new Date()))();
  verifyCaChain(intermediate, uppers, roots, now);
  const td = trustDomainOfCaUriSans(intermediate.facts.subjectAltName.uris, certSource);
  if (!td.ok) throw new CaError(CaErrorCode.CHAIN_INVALID, td.reason, { file: certSource });
  const trustDomain = td.trustDomain;
  const writes: CaFileWrite[] = [
    { name: CA_FILES.intermediateCert, contents: intermediate.pem, mode: 0o644 },
    { name: CA_FILES.chain, contents: [intermediate, ...uppers].map((c) => c.pem).join(''), mode: 0o644 },
    { name: CA_FILES.rootCert, contents: roots.map((r) => r.pem).join(''), mode: 0o644 },
  ];
  writeCaFiles(dir, writes);
  return {
    trustDomain,
    intermediateNotAfter: intermediate.facts.notAfter,
    rootNotAfter: new Date(Math.min(...roots.map((r) => r.facts.notAfter.getTime()))),
    files: writes.map((w) => w.name),
  };
}

function refuseExisting(dir: string, force: boolean | undefined, names: string[]): void {
  requireCaDir(dir);
  const present = names.filter((n) => caFileExists(dir, n));
  if (present.length > 0 && !force) {
    throw new CaError(CaErrorCode.EXISTS, `${dir} already holds a CA (${present.join(', ')}); pass --force to replace it`, { dir, present });
  }
}

/** Parses a trust domain, mapping a bad one to a CaError with `code`. */
export function checkTrustDomain(td: string, code: typeof CaErrorCode.BAD_SPIFFE_ID | typeof CaErrorCode.CHAIN_INVALID = CaErrorCode.BAD_SPIFFE_ID): string {
  try {
    return parseTrustDomain(td);
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new CaError(code, `invalid trust domain "${td}": ${err.message}`, { field: 'trustDomain', reason: err.code }, { cause: err });
    throw err;
  }
}

function checkKeyType(t: string): CaKeyType {
  if (!(CA_KEY_TYPES as readonly string[]).includes(t)) {
    throw new CaError(CaErrorCode.UNSUPPORTED_KEY, `key type "${t}" is not supported (one of ${CA_KEY_TYPES.join(', ')})`, { field: 'keyType' });
  }
  return t as CaKeyType;
}

function signingAlgorithm(t: CaKeyType): { name: string; hash?: string } {
  switch (t) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ec-p384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'rsa-2048':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

async function generateKey(t: CaKeyType): Promise<{ pem: string; web: webcrypto.CryptoKeyPair }> {
  const p = generationParams(t);
  const pair = p.kind === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: p.namedCurve })
    : generateKeyPairSync('rsa', { modulusLength: p.modulusLength });
  const pkcs8 = pair.privateKey.export({ type: 'pkcs8', format: 'der' });
  const spki = pair.publicKey.export({ type: 'spki', format: 'der' });
  const alg = p.kind === 'ec' ? { name: 'ECDSA', namedCurve: p.namedCurve } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']);
  return { pem: derToPem(pkcs8, 'PRIVATE KEY'), web: { privateKey, publicKey } as webcrypto.CryptoKeyPair };
}
