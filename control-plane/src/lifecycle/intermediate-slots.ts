/**
 * Intermediate rotation on the CA dir, as explicit slots (SPIRE's
 * prepare/activate): the current intermediate in the dir itself, the next
 * one in `next/` (key 0600 + CSR, then the signed certificate), the one it
 * replaced in `previous/` (certificate only; its key is deleted).
 *
 * Nothing in flight breaks: leaves already issued carry the old
 * intermediate in their own chain and keep verifying against the same root
 * bundle; new leaves come from the new intermediate as soon as the control
 * plane reloads the dir. Every write is atomic (temp file + rename).
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { samePublicKey, trustDomainOfCaUriSans } from '@trellis/shared';
import { readCaCertificate, verifyCaChain, type CaCertificate } from '../ca/ca-chain';
import { CA_FILES, readCaFiles, writeCaFiles } from '../ca/ca-dir';
import { CaError, CaErrorCode } from '../ca/ca-error';
import { CA_KEY_TYPES, describeKey, type CaKeyType } from '../ca/key-types';
import { pemCertificates } from '../ca/pem';
import { SIGNER_CONFIG_FILE } from '../hsm/signer-config';
import { createIntermediateCsr, generateCaKey, signIntermediateCsr } from './ca-material';
import { auditLifecycle } from './lifecycle-audit';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { loadRootSigner } from './root-dir';
import { shouldActivateNextIntermediate, type TimingDecision } from './rotation-timing';

/** Slot folders inside a CA dir. */
export const SLOT_DIRS = Object.freeze({ next: 'next', previous: 'previous' });

/** The current intermediate of a CA dir. */
export interface CurrentIntermediate {
  readonly cert: CaCertificate;
  readonly trustDomain: string;
  readonly keyType: string;
  readonly roots: CaCertificate[];
}

/** State of the `next/` slot. */
export type NextSlotState = 'empty' | 'prepared' | 'signed';

/** What the slots of a CA dir hold. */
export interface IntermediateSlots {
  readonly current: CurrentIntermediate;
  readonly nextState: NextSlotState;
  /** The signed next intermediate, when `nextState` is `signed`. */
  readonly next: CaCertificate | null;
  readonly nextCsrPath: string | null;
  readonly previous: CaCertificate | null;
}

function readCert(path: string): CaCertificate {
  const ders = pemCertificates(readFileSync(path, 'utf8'), path);
  return readCaCertificate(ders[0]!, path);
}

function trustDomainOf(cert: CaCertificate, source: string): string {
  const td = trustDomainOfCaUriSans(cert.facts.subjectAltName.uris, source);
  if (!td.ok) throw new CaError(CaErrorCode.CHAIN_INVALID, td.reason, { file: source });
  return td.trustDomain;
}

/** Reads the current intermediate and the roots of `caDir`. */
export function readCurrentIntermediate(caDir: string): CurrentIntermediate {
  const files = readCaFiles(caDir, [CA_FILES.intermediateCert, CA_FILES.rootCert]);
  const intPath = join(caDir, CA_FILES.intermediateCert);
  const rootPath = join(caDir, CA_FILES.rootCert);
  const cert = readCaCertificate(pemCertificates(files.get(CA_FILES.intermediateCert)!, intPath)[0]!, intPath);
  const roots = pemCertificates(files.get(CA_FILES.rootCert)!, rootPath).map((d, i) => readCaCertificate(d, `${rootPath} certificate ${i + 1}`));
  const { keyType } = describeKey(cert.x509.publicKey, intPath);
  return { cert, trustDomain: trustDomainOf(cert, intPath), keyType, roots };
}

/** Reads every slot of `caDir` (never writes). */
export function readIntermediateSlots(caDir: string): IntermediateSlots {
  const current = readCurrentIntermediate(caDir);
  const nextDir = join(caDir, SLOT_DIRS.next);
  const nextCert = join(nextDir, CA_FILES.intermediateCert);
  const nextKey = join(nextDir, CA_FILES.intermediateKey);
  const nextCsr = join(nextDir, CA_FILES.intermediateCsr);
  const prevCert = join(caDir, SLOT_DIRS.previous, CA_FILES.intermediateCert);
  let nextState: NextSlotState = 'empty';
  let next: CaCertificate | null = null;
  if (existsSync(nextKey)) {
    nextState = existsSync(nextCert) ? 'signed' : 'prepared';
    if (nextState === 'signed') next = readCert(nextCert);
  }
  return {
    current,
    nextState,
    next,
    nextCsrPath: nextState === 'empty' ? null : nextCsr,
    previous: existsSync(prevCert) ? readCert(prevCert) : null,
  };
}

function refuseHsm(caDir: string): void {
  if (existsSync(join(caDir, SIGNER_CONFIG_FILE))) {
    throw new LifecycleError(LifecycleErrorCode.NO_NEXT_INTERMEDIATE, `${caDir} keeps its intermediate key in an HSM (${SIGNER_CONFIG_FILE}); rotate it with "trellis hsm keygen" and "trellis ca import" instead`, { dir: caDir });
  }
}

/**
 * Prepares `next/`: a fresh key (0600) and a CSR for the same trust domain
 * (and by default the same key type) as the current intermediate. Keeps an
 * already prepared slot unless `force`, so a repeated call (a timer, a
 * restarted control plane) never throws away a CSR the root may be signing.
 */
export async function prepareNextIntermediate(caDir: string, o: { keyType?: CaKeyType; force?: boolean } = {}): Promise<{ csrPem: string; csrPath: string; created: boolean; trustDomain: string }> {
  refuseHsm(caDir);
  const current = readCurrentIntermediate(caDir);
  const nextDir = join(caDir, SLOT_DIRS.next);
  const csrPath = join(nextDir, CA_FILES.intermediateCsr);
  if (!o.force && existsSync(join(nextDir, CA_FILES.intermediateKey)) && existsSync(csrPath)) {
    return { csrPem: readFileSync(csrPath, 'utf8'), csrPath, created: false, trustDomain: current.trustDomain };
  }
  const keyType = o.keyType ?? ((CA_KEY_TYPES as readonly string[]).includes(current.keyType) ? (current.keyType as CaKeyType) : 'ec-p256');
  const key = await generateCaKey(keyType);
  const csrPem = await createIntermediateCsr(current.trustDomain, key);
  mkdirSync(nextDir, { recursive: true, mode: 0o700 });
  rmSync(join(nextDir, CA_FILES.intermediateCert), { force: true });
  writeCaFiles(nextDir, [
    { name: CA_FILES.intermediateKey, contents: key.pem, mode: 0o600 },
    { name: CA_FILES.intermediateCsr, contents: csrPem, mode: 0o644 },
  ]);
  auditLifecycle(caDir, 'intermediate.prepared', new Date(), { trustDomain: current.trustDomain, keyType });
  return { csrPem, csrPath, created: true, trustDomain: current.trustDomain };
}

/**
 * Installs the signed next intermediate into `next/`. Fails closed: the
 * certificate must match `next/intermediate.key` (KEY_MISMATCH), carry the
 * current trust domain, and chain now to a root already in the dir's
 * `root.pem` (CHAIN_INVALID), so activating it can never serve leaves the
 * mesh does not trust. `chainPem` may add intermediates between it and the root.
 */
export function installNextIntermediate(caDir: string, certPem: string, o: { now: Date; chainPem?: string; source?: string }): CaCertificate {
  const source = o.source ?? 'next intermediate';
  const current = readCurrentIntermediate(caDir);
  const nextDir = join(caDir, SLOT_DIRS.next);
  const keyPath = join(nextDir, CA_FILES.intermediateKey);
  if (!existsSync(keyPath)) throw new LifecycleError(LifecycleErrorCode.NO_NEXT_INTERMEDIATE, `${caDir} has no prepared next intermediate (run "trellis ca prepare-intermediate --dir ${caDir}")`, { dir: caDir });
  const ders = pemCertificates(certPem, source);
  const cert = readCaCertificate(ders[0]!, source);
  const uppers = [...ders.slice(1), ...(o.chainPem ? pemCertificates(o.chainPem, 'chain') : [])]
    .map((d, i) => readCaCertificate(d, `${source} chain certificate ${i + 1}`))
    .filter((c) => !c.selfSigned);
  const key = createPrivateKey(readFileSync(keyPath, 'utf8'));
  if (!samePublicKey(cert.x509.publicKey, createPublicKey(key))) {
    throw new CaError(CaErrorCode.KEY_MISMATCH, `${source} is not for the key in ${keyPath} (was it signed from ${join(nextDir, CA_FILES.intermediateCsr)}?)`, { file: source });
  }
  const td = trustDomainOf(cert, source);
  if (td !== current.trustDomain) throw new CaError(CaErrorCode.CHAIN_INVALID, `${source} is for trust domain ${td}, the CA serves ${current.trustDomain}`, { file: source });
  verifyCaChain(cert, uppers, current.roots, o.now);
  writeCaFiles(nextDir, [
    { name: CA_FILES.intermediateCert, contents: cert.pem, mode: 0o644 },
    { name: CA_FILES.chain, contents: [cert, ...uppers].map((c) => c.pem).join(''), mode: 0o644 },
  ]);
  auditLifecycle(caDir, 'intermediate.signed', o.now, { serial: cert.facts.serialHex, notAfter: cert.facts.notAfter.toISOString() });
  return cert;
}

/**
 * With the root at hand (`rootDir` holding root.pem + root.key): prepares
 * `next/` if needed, signs its CSR and installs the result. The development
 * and online-root path of intermediate rotation.
 */
export async function signNextIntermediateWithRoot(caDir: string, rootDir: string, o: { now: Date; validityDays?: number }): Promise<CaCertificate> {
  const prepared = await prepareNextIntermediate(caDir);
  const root = await loadRootSigner(rootDir, o.now);
  const signed = await signIntermediateCsr(root, prepared.csrPem, { now: o.now, validityDays: o.validityDays, source: prepared.csrPath, expectTrustDomain: prepared.trustDomain });
  return installNextIntermediate(caDir, signed.certPem, { now: o.now, source: prepared.csrPath.replace(/\.csr$/, '.pem') });
}

/** Result of {@link activateNextIntermediate}. */
export interface ActivationResult {
  readonly activated: boolean;
  readonly decision: TimingDecision;
  readonly current: CaCertificate;
}

/**
 * Makes the signed next intermediate the current one when its time has come
 * (see {@link shouldActivateNextIntermediate}), or at once with `force`.
 * The replaced certificate and chain go to `previous/`, its key is deleted,
 * `next/` is emptied. Refuses (NEXT_NOT_SIGNED / NO_NEXT_INTERMEDIATE) when
 * nothing is ready, and always refuses a next intermediate that is not
 * valid now or no longer chains to `root.pem`: fails closed.
 */
export function activateNextIntermediate(caDir: string, o: { now: Date; force?: boolean }): ActivationResult {
  refuseHsm(caDir);
  const slots = readIntermediateSlots(caDir);
  if (slots.nextState === 'empty') throw new LifecycleError(LifecycleErrorCode.NO_NEXT_INTERMEDIATE, `${caDir} has no next intermediate (run "trellis ca prepare-intermediate --dir ${caDir}")`, { dir: caDir });
  if (slots.nextState === 'prepared' || !slots.next) {
    throw new LifecycleError(LifecycleErrorCode.NEXT_NOT_SIGNED, `the next intermediate in ${caDir} is not signed yet: run "trellis ca sign-intermediate --root-dir ROOT --csr ${slots.nextCsrPath}" where the root lives, then "trellis ca activate-intermediate --dir ${caDir} --cert FILE"`, { dir: caDir, csr: slots.nextCsrPath });
  }
  const next = slots.next;
  const nextDir = join(caDir, SLOT_DIRS.next);
  const files = readCaFiles(nextDir, [CA_FILES.intermediateKey, CA_FILES.chain]);
  const uppers = pemCertificates(files.get(CA_FILES.chain)!, join(nextDir, CA_FILES.chain)).slice(1).map((d, i) => readCaCertificate(d, `next chain ${i + 2}`));
  verifyCaChain(next, uppers, slots.current.roots, o.now);
  const decision = o.force
    ? { yes: true, reason: 'activation forced' }
    : shouldActivateNextIntermediate(o.now, slots.current.cert.facts, next.facts);
  if (!decision.yes) return { activated: false, decision, current: slots.current.cert };
  if (o.now < next.facts.notBefore || o.now >= next.facts.notAfter) {
    throw new CaError(CaErrorCode.INTERMEDIATE_EXPIRED, `the next intermediate in ${nextDir} is not valid now`, { dir: caDir });
  }

  const currentFiles = readCaFiles(caDir, [CA_FILES.intermediateCert, CA_FILES.chain]);
  const prevDir = join(caDir, SLOT_DIRS.previous);
  mkdirSync(prevDir, { recursive: true, mode: 0o700 });
  writeCaFiles(prevDir, [
    { name: CA_FILES.intermediateCert, contents: currentFiles.get(CA_FILES.intermediateCert)!, mode: 0o644 },
    { name: CA_FILES.chain, contents: currentFiles.get(CA_FILES.chain)!, mode: 0o644 },
  ]);
  writeCaFiles(caDir, [
    { name: CA_FILES.intermediateKey, contents: files.get(CA_FILES.intermediateKey)!, mode: 0o600 },
    { name: CA_FILES.intermediateCert, contents: next.pem, mode: 0o644 },
    { name: CA_FILES.chain, contents: files.get(CA_FILES.chain)!, mode: 0o644 },
  ]);
  rmSync(nextDir, { recursive: true, force: true });
  auditLifecycle(caDir, 'intermediate.activated', o.now, { serial: next.facts.serialHex, notAfter: next.facts.notAfter.toISOString(), replacedSerial: slots.current.cert.facts.serialHex, reason: decision.reason });
  return { activated: true, decision, current: next };
}
