/**
 * Admin credentials: a short-lived X.509-SVID for an admin identity, issued
 * by the CA dir's intermediate through the same CertificateAuthority (and
 * its sign-then-check) that issues every workload SVID, written with the
 * trust bundle the client needs to verify the control plane. A directory
 * holds one set, every file 0600:
 *
 *   svid.pem    the admin certificate, then its intermediate(s)
 *   svid.key    its private key (PKCS#8), generated here, never sent anywhere
 *   bundle.pem  the mesh roots at issue time: what the control plane's serving certificate must chain to
 *
 * The issuance is a line in the CA's audit.log like any other, so a root
 * rotation waits for admin certificates issued under the old root to expire.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultAdminSpiffeId, parseX509SvidPem, TrellisError } from '@trellis/shared';
import { loadCertificateAuthority } from '../ca/certificate-authority';
import { writeCaFiles } from '../ca/ca-dir';
import type { Signer } from '../ca/signer';
import { createKeyAndCsr } from '../tls/server-identity';
import { AdminError, AdminErrorCode } from './admin-error';

/** File names inside a credentials dir. */
export const ADMIN_CREDENTIAL_FILES = Object.freeze({ cert: 'svid.pem', key: 'svid.key', bundle: 'bundle.pem' });

/** The default lifetime of admin credentials: a working day. */
export const DEFAULT_ADMIN_CREDENTIAL_TTL_SECONDS = 8 * 3600;

/** Admin credentials loaded for a client. The key is PEM; never log it. */
export interface AdminCredentials {
  readonly dir: string;
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly notAfter: Date;
  readonly chainPem: string;
  readonly keyPem: string;
  readonly bundlePem: string;
}

/** What {@link issueAdminCredentials} wrote. */
export interface IssuedAdminCredentials {
  readonly dir: string;
  readonly spiffeId: string;
  readonly serialHex: string;
  readonly notAfter: Date;
  readonly files: readonly string[];
}

/**
 * Issues admin credentials from `caDir` into `outDir` (created 0700).
 * `spiffeId` defaults to the trust domain's trellis-admin identity; the
 * CA's rules apply (same trust domain, a path, TTL 1m..24h). The written
 * files are read back and checked (key matches, SVID profile) before this
 * resolves. `signer` plugs in an HSM-held intermediate key.
 */
export async function issueAdminCredentials(caDir: string, outDir: string, o: { spiffeId?: string; ttlSeconds?: number; requester: string; signer?: Signer }): Promise<IssuedAdminCredentials> {
  const ca = await loadCertificateAuthority(caDir, o.signer ? { signer: o.signer } : {});
  try {
    const spiffeId = o.spiffeId ?? defaultAdminSpiffeId(ca.trustDomain);
    const { keyPem, csrDer } = await createKeyAndCsr(spiffeId);
    const svid = await ca.issue({ csr: csrDer, spiffeId, ttlSeconds: o.ttlSeconds ?? DEFAULT_ADMIN_CREDENTIAL_TTL_SECONDS, requester: o.requester });
    const bundlePem = ca.trustBundle().rootsPem.join('');
    mkdirSync(outDir, { recursive: true, mode: 0o700 });
    writeCaFiles(outDir, [
      { name: ADMIN_CREDENTIAL_FILES.cert, contents: svid.chainPem, mode: 0o600 },
      { name: ADMIN_CREDENTIAL_FILES.key, contents: keyPem, mode: 0o600 },
      { name: ADMIN_CREDENTIAL_FILES.bundle, contents: bundlePem, mode: 0o600 },
    ]);
    loadAdminCredentials(outDir, svid.notBefore);
    return Object.freeze({ dir: outDir, spiffeId, serialHex: svid.serialHex, notAfter: svid.notAfter, files: Object.freeze(Object.values(ADMIN_CREDENTIAL_FILES)) });
  } finally {
    ca.close();
  }
}

function readFile(dir: string, name: string): string {
  const path = join(dir, name);
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new AdminError(AdminErrorCode.BAD_CREDENTIALS, `${path}: cannot read (${code}); write the credentials with "trellis admin credentials --ca-dir CA_DIR --out ${dir}"`, { file: path, reason: code });
  }
}

/**
 * Loads and checks a credentials dir: the certificate is an X.509-SVID whose
 * key is `svid.key`, valid at `now`, and `bundle.pem` holds a certificate.
 * Fails closed with BAD_CREDENTIALS naming the file (never quoting the key).
 */
export function loadAdminCredentials(dir: string, now: Date): AdminCredentials {
  const chainPem = readFile(dir, ADMIN_CREDENTIAL_FILES.cert);
  const keyPem = readFile(dir, ADMIN_CREDENTIAL_FILES.key);
  const bundlePem = readFile(dir, ADMIN_CREDENTIAL_FILES.bundle);
  const certPath = join(dir, ADMIN_CREDENTIAL_FILES.cert);
  let svid: ReturnType<typeof parseX509SvidPem>;
  try {
    svid = parseX509SvidPem(chainPem, keyPem, { certsSource: certPath, keySource: join(dir, ADMIN_CREDENTIAL_FILES.key) });
  } catch (err) {
    const why = err instanceof TrellisError ? `${err.message} [${err.code}]` : (err as Error).message;
    throw new AdminError(AdminErrorCode.BAD_CREDENTIALS, `${dir} does not hold usable admin credentials: ${why}`, { file: certPath });
  }
  const leaf = svid.certificates[0]!;
  if (now.getTime() >= leaf.notAfter.getTime()) {
    throw new AdminError(AdminErrorCode.BAD_CREDENTIALS, `the admin certificate in ${certPath} expired at ${leaf.notAfter.toISOString()}; run "trellis admin credentials" again`, { file: certPath, notAfter: leaf.notAfter.toISOString() });
  }
  if (!bundlePem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new AdminError(AdminErrorCode.BAD_CREDENTIALS, `${join(dir, ADMIN_CREDENTIAL_FILES.bundle)} holds no certificate`, { file: join(dir, ADMIN_CREDENTIAL_FILES.bundle) });
  }
  return Object.freeze({ dir, spiffeId: svid.spiffeId.toString(), trustDomain: svid.spiffeId.trustDomain, notAfter: leaf.notAfter, chainPem, keyPem, bundlePem });
}
