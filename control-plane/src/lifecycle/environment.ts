/**
 * Environments under one root: `trellis ca new-intermediate` makes a
 * separate, complete CA dir (its own intermediate key and certificate) for
 * dev, staging or prod, so a compromised environment's intermediate cannot
 * sign for the others' trust domains and can be replaced on its own.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrustDomain, SpiffeIdError } from '@trellis/shared';
import { CA_FILES, writeCaFiles } from '../ca/ca-dir';
import { CaError, CaErrorCode } from '../ca/ca-error';
import type { CaKeyType } from '../ca/key-types';
import { createIntermediateCsr, generateCaKey, signIntermediateCsr } from './ca-material';
import { auditLifecycle } from './lifecycle-audit';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { loadRootSigner } from './root-dir';

/** File naming the environment inside its CA dir. */
export const ENVIRONMENT_FILE = 'environment.json';

/** Options of {@link createEnvironmentIntermediate}. */
export interface EnvironmentOptions {
  /** A DNS label: `dev`, `staging`, `prod`. */
  name: string;
  trustDomain?: string;
  keyType?: CaKeyType;
  validityDays?: number;
  now: Date;
  force?: boolean;
}

/** What was created. */
export interface EnvironmentResult {
  readonly dir: string;
  readonly name: string;
  readonly trustDomain: string;
  readonly intermediateNotAfter: Date;
  readonly files: readonly string[];
}

/** Checks an environment name (BAD_ENVIRONMENT unless it is a lower-case DNS label). */
export function checkEnvironmentName(name: string): string {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    throw new LifecycleError(LifecycleErrorCode.BAD_ENVIRONMENT, `environment name "${name}" must be a lower-case DNS label (a-z, 0-9, -; at most 63)`, { field: 'name' });
  }
  return name;
}

/**
 * Creates `outDir` as a CA dir whose intermediate is signed by the root in
 * `rootDir` (root.pem + root.key). `outDir` gets the root certificate (never
 * its key), the new intermediate key (0600) and certificate, chain.pem and
 * environment.json. Refuses an existing CA (TRELLIS_CA_EXISTS) without `force`.
 */
export async function createEnvironmentIntermediate(rootDir: string, outDir: string, o: EnvironmentOptions): Promise<EnvironmentResult> {
  const name = checkEnvironmentName(o.name);
  let trustDomain: string;
  try {
    trustDomain = parseTrustDomain(o.trustDomain ?? 'cluster.local');
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new CaError(CaErrorCode.BAD_SPIFFE_ID, `invalid trust domain "${o.trustDomain}": ${err.message}`, { field: 'trustDomain' }, { cause: err });
    throw err;
  }
  const root = await loadRootSigner(rootDir, o.now);
  if (!o.force && [CA_FILES.intermediateCert, CA_FILES.intermediateKey].some((f) => existsSync(join(outDir, f)))) {
    throw new CaError(CaErrorCode.EXISTS, `${outDir} already holds a CA; pass --force to replace it`, { dir: outDir });
  }
  const key = await generateCaKey(o.keyType ?? 'ec-p256');
  const csrPem = await createIntermediateCsr(trustDomain, key, name);
  const signed = await signIntermediateCsr(root, csrPem, { now: o.now, validityDays: o.validityDays, source: `intermediate for ${name}`, expectTrustDomain: trustDomain });
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const files = [
    { name: CA_FILES.intermediateKey, contents: key.pem, mode: 0o600 },
    { name: CA_FILES.intermediateCert, contents: signed.certPem, mode: 0o644 },
    { name: CA_FILES.chain, contents: signed.certPem, mode: 0o644 },
    { name: CA_FILES.rootCert, contents: root.certPem, mode: 0o644 },
    { name: ENVIRONMENT_FILE, contents: JSON.stringify({ name, trustDomain, createdAt: o.now.toISOString() }, null, 2) + '\n', mode: 0o644 },
  ];
  writeCaFiles(outDir, files);
  auditLifecycle(outDir, 'environment.created', o.now, { name, trustDomain, notAfter: signed.notAfter.toISOString() });
  return { dir: outDir, name, trustDomain, intermediateNotAfter: signed.notAfter, files: files.map((f) => f.name) };
}
