/**
 * Reading a root directory (`root.pem` + `root.key`, as `trellis ca init`
 * writes it) wherever the offline root lives. Nothing here is run by the
 * control plane unless the operator gives it the root (development or an
 * online root).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { samePublicKey } from '@trellis/shared';
import { readCaCertificate, type CaCertificate } from '../ca/ca-chain';
import { CA_FILES, writeCaFiles } from '../ca/ca-dir';
import type { CaKeyType } from '../ca/key-types';
import { pemCertificates } from '../ca/pem';
import { createRootCertificate, generateCaKey, importPrivateKey, type RootSigner } from './ca-material';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';

/** A root that can sign, with its parsed certificate. */
export interface LoadedRoot extends RootSigner {
  readonly cert: CaCertificate;
}

function readFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${path}: cannot read (${code}); the root directory needs root.pem and root.key`, { file: path, reason: code }, { cause: err });
  }
}

/**
 * Loads the root that `root.key` in `dir` belongs to (the first certificate
 * of `root.pem` with that key). Fails closed with ROOT_UNAVAILABLE when a
 * file is missing, the key matches no self-signed certificate, or the root
 * has expired at `now`.
 */
export async function loadRootSigner(dir: string, now: Date): Promise<LoadedRoot> {
  const certPath = join(dir, CA_FILES.rootCert);
  const keyPath = join(dir, CA_FILES.rootKey);
  const certText = readFile(certPath);
  const key = await importPrivateKey(readFile(keyPath), keyPath);
  const certs = pemCertificates(certText, certPath).map((d, i) => readCaCertificate(d, `${certPath} certificate ${i + 1}`));
  const cert = certs.find((c) => samePublicKey(c.x509.publicKey, key.publicKey));
  if (!cert) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${keyPath} is the key of no certificate in ${certPath}`, { file: keyPath });
  if (!cert.selfSigned || !cert.facts.basicConstraints.ca) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${certPath}: the certificate for root.key is not a self-signed CA`, { file: certPath });
  if (now >= cert.facts.notAfter) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, `${certPath}: the root expired at ${cert.facts.notAfter.toISOString()}`, { file: certPath });
  return { cert, certPem: cert.pem, key };
}

/**
 * The new root of a rotation, wherever the operator keeps it: loaded from
 * `dir` when it holds root.pem, otherwise created there first (a fresh key
 * 0600 in a 0700 dir, a self-signed root for `trustDomain` named after
 * today's date). Runs where the root lives (the CLI), never in the control
 * plane.
 */
export async function ensureNewRoot(dir: string, o: { trustDomain: string; now: Date; keyType?: CaKeyType }): Promise<LoadedRoot> {
  if (!existsSync(join(dir, CA_FILES.rootCert))) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const key = await generateCaKey(o.keyType ?? 'ec-p256');
    const certPem = await createRootCertificate({ trustDomain: o.trustDomain, key, now: o.now, generation: o.now.toISOString().slice(0, 10) });
    writeCaFiles(dir, [
      { name: CA_FILES.rootKey, contents: key.pem, mode: 0o600 },
      { name: CA_FILES.rootCert, contents: certPem, mode: 0o644 },
    ]);
  }
  return loadRootSigner(dir, o.now);
}
