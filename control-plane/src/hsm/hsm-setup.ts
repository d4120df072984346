/**
 * Setting up a CA dir whose intermediate key lives in an HSM: generate the
 * key inside the token and record where it is (`signer.yaml`), write the
 * intermediate CSR signed by the token, and install the signed intermediate.
 *
 * The order mirrors the file-key flow (`ca intermediate-csr`, then the root
 * signs, then `ca import`); the only difference is that no `intermediate.key`
 * ever exists.
 */
import { derToPem } from '@trellis/shared';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CaError, CaErrorCode } from '../ca/ca-error';
import { CA_FILES, caFileExists, requireCaDir, writeCaFiles } from '../ca/ca-dir';

import { checkTrustDomain, installIntermediate } from '../ca/ca-setup';
import { HsmError, HsmErrorCode } from './hsm-error';
import { createIntermediateCsr } from '../ca/intermediate-csr';
import { acquirePkcs11Module, requirePkcs11Binding } from './pkcs11-module';
import { findSlot, generateTokenKeyPair, keyLabelExists, openUserSession, readTokenPublicKey } from './pkcs11-token';
import type { Pkcs11Signer, Pkcs11SignerDeps } from './pkcs11-signer';
import { formatSignerConfig, readPin, SIGNER_CONFIG_FILE, type Pkcs11SignerConfig } from './signer-config';

/** What {@link generateHsmKey} made. */
export interface HsmKeygenResult {
  /** The config as written, with `keyId` filled in. */
  config: Pkcs11SignerConfig;
  keyType: string;
  /** Path of the written `signer.yaml`. */
  configFile: string;
}

/**
 * Generates the intermediate key pair inside the token (persistent, private
 * half sensitive and never extractable) and writes `signer.yaml` into
 * `caDir`. Refuses with CONFIG_EXISTS when `signer.yaml` exists (unless
 * `force`) and with KEY_EXISTS when the token already has a key with that
 * label: Trellis never overwrites or deletes a key in an HSM.
 */
export function generateHsmKey(caDir: string, config: Pkcs11SignerConfig, opts: { force?: boolean } = {}, deps: Pkcs11SignerDeps = {}): HsmKeygenResult {
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  requireCaDir(caDir);
  const configFile = join(caDir, SIGNER_CONFIG_FILE);
  if (!opts.force && caFileExists(caDir, SIGNER_CONFIG_FILE)) {
    throw new HsmError(HsmErrorCode.CONFIG_EXISTS, `${configFile} already exists; pass --force to replace it (the key it names stays on the token)`, { file: configFile });
  }
  const pin = readPin(config.pin, deps);
  const mod = acquirePkcs11Module(config.module, deps.loadBinding ?? requirePkcs11Binding);
  try {
    const { binding, api } = mod;
    const slot = findSlot(mod.binding, mod.api, config, config.module);
    const what = `${config.tokenLabel !== undefined ? `token "${config.tokenLabel}"` : `slot ${config.slot}`} key "${config.keyLabel}"`;
    const session = openUserSession(mod, slot, pin, what);
    try {
      if (keyLabelExists(binding, api, session, config.keyLabel)) {
        throw new HsmError(HsmErrorCode.KEY_EXISTS, `${what} already exists on the token; choose another --key-label (Trellis never overwrites HSM keys)`, { key: config.keyLabel });
      }
      const keyId = config.keyId ?? randomBytes(8).toString('hex');
      const pair = generateTokenKeyPair(binding, api, session, config.keyLabel, Buffer.from(keyId, 'hex'), config.keyType);
      const pub = readTokenPublicKey(binding, api, session, pair.publicKey, what);
      const written: Pkcs11SignerConfig = Object.freeze({ ...config, keyId });
      writeCaFiles(caDir, [{ name: SIGNER_CONFIG_FILE, contents: formatSignerConfig(written), mode: 0o644 }]);
      deps.logger?.info('hsm key generated', { token: config.tokenLabel ?? config.slot, key: config.keyLabel, keyType: pub.keyType });
      return { config: written, keyType: pub.keyType, configFile };
    } finally {
      try {
        api.C_CloseSession(session);
      } catch {
        // Best effort.
      }
    }
  } finally {
    mod.release();
  }
}

/**
 * Writes `intermediate.csr` into `caDir`: a CSR for the intermediate of
 * `trustDomain`, signed by the HSM key. Returns the PEM.
 */
export async function writeHsmIntermediateCsr(caDir: string, signer: Pkcs11Signer, trustDomain: string): Promise<{ csrPem: string; file: string }> {
  const td = checkTrustDomain(trustDomain, CaErrorCode.BAD_SPIFFE_ID);
  requireCaDir(caDir);
  let der: Buffer;
  try {
    der = await createIntermediateCsr(signer, td);
  } catch (err) {
    if (err instanceof CaError && err.code === CaErrorCode.KEY_MISMATCH) {
      throw new HsmError(HsmErrorCode.SIGN_FAILED, 'the CSR signature made by the token does not verify with the token\'s public key', {}, { cause: err });
    }
    throw err;
  }
  const csrPem = derToPem(der, 'CERTIFICATE REQUEST');
  writeCaFiles(caDir, [{ name: CA_FILES.intermediateCsr, contents: csrPem, mode: 0o644 }]);
  return { csrPem, file: join(caDir, CA_FILES.intermediateCsr) };
}

/**
 * Installs an intermediate signed for the HSM key. The same checks as
 * `trellis ca import`, failing closed: the certificate is for the token's
 * public key (KEY_MISMATCH), is a signing CA with exactly one URI SAN
 * `spiffe://<td>` and chains to a root in `chainPem` now (CHAIN_INVALID).
 * Then writes intermediate.pem, chain.pem and root.pem together.
 */
export function importHsmIntermediate(caDir: string, signer: Pkcs11Signer, certPem: string, chainPem: string, opts: { certSource?: string; chainSource?: string; clock?: () => Date } = {}): { trustDomain: string; intermediateNotAfter: Date; files: string[] } {
  requireCaDir(caDir);
  const { trustDomain, intermediateNotAfter, files } = installIntermediate(caDir, signer.publicKey, `the HSM ${signer.description}`, certPem, chainPem, opts);
  return { trustDomain, intermediateNotAfter, files };
}
