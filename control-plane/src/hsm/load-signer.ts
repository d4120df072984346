/**
 * Choosing the CA's signer from its directory: when the CA dir holds
 * `signer.yaml`, the intermediate key is in an HSM and this opens the
 * PKCS#11 signer it describes; otherwise the CA uses its file key.
 *
 * Wiring: `const signer = loadSigner(dir, deps); const ca = await
 * loadCertificateAuthority(dir, { ...deps, signer });` and `signer?.close()`
 * at shutdown.
 */
import { join } from 'node:path';
import { caFileExists } from '../ca/ca-dir';
import { HsmError, HsmErrorCode } from './hsm-error';
import { openPkcs11Signer, type Pkcs11Signer, type Pkcs11SignerDeps } from './pkcs11-signer';
import { readSignerConfigFile, SIGNER_CONFIG_FILE } from './signer-config';

/**
 * The HSM signer configured by `caDir/signer.yaml`, or undefined when there
 * is no such file (the CA then signs with `intermediate.key`). A present but
 * broken file is an error (BAD_CONFIG and the other HSM codes), never a
 * silent fall-back to a file key.
 */
export function loadSigner(caDir: string, deps: Pkcs11SignerDeps = {}): Pkcs11Signer | undefined {
  if (!caFileExists(caDir, SIGNER_CONFIG_FILE)) return undefined;
  return openPkcs11Signer(readSignerConfigFile(join(caDir, SIGNER_CONFIG_FILE)), deps);
}

/** Like {@link loadSigner}, but NOT_CONFIGURED when `caDir` has no `signer.yaml`. */
export function requireSigner(caDir: string, deps: Pkcs11SignerDeps = {}): Pkcs11Signer {
  const signer = loadSigner(caDir, deps);
  if (!signer) {
    throw new HsmError(HsmErrorCode.NOT_CONFIGURED, `${join(caDir, SIGNER_CONFIG_FILE)} not found: this CA dir has no HSM signer (run "trellis hsm keygen --dir ${caDir} ..." first)`, { file: join(caDir, SIGNER_CONFIG_FILE) });
  }
  return signer;
}
