/**
 * Applies the root rotation's decisions to a CA dir: start (new root beside
 * the old in `root.pem`, the intermediate it signed waiting in `next/`),
 * switch (that intermediate becomes current), drop (only the new root
 * stays). The CA dir never holds the new root's key: whoever holds it signs
 * the CSR of {@link prepareRootRotation} and hands over certificates only. Each step saves the state after
 * the files, so a crash between the two repeats a step that is safe to
 * repeat. The control plane (or `trellis ca rotate-root`, run again) calls
 * {@link stepRootRotation}; it never advances on an unobserved gate.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { contentVersion, SINGLETON_RESOURCE_NAME, derToPem } from '@trellis/shared';
import { readCaCertificate, verifyCaChain, type CaCertificate } from '../ca/ca-chain';
import { CA_FILES, writeCaFiles } from '../ca/ca-dir';
import { pemCertificates } from '../ca/pem';
import { readAuditLog, unexpiredIssuedBefore } from './audit-index';
import { signIntermediateCsr, type RootSigner } from './ca-material';
import { activateNextIntermediate, installNextIntermediate, prepareNextIntermediate, readCurrentIntermediate, readIntermediateSlots } from './intermediate-slots';
import type { CaKeyType } from '../ca/key-types';
import { auditLifecycle } from './lifecycle-audit';
import { ensureNewRoot } from './root-dir';
import { withLifecycleLock } from './lifecycle-lock';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { advanceRootRotation, decideRootRotation, oldLeafCutoff, type ObservedProxy, type RootRotationState, type RotationDecision, type RotationObservation } from './root-rotation';
import { loadRootRotationState, saveRootRotationState } from './root-rotation-store';

/** The version the control plane gives a bundle of `rootsPem` (its trust-bundle resource). */
export function bundleVersion(trustDomain: string, rootsPem: readonly string[]): string {
  return contentVersion([{ name: SINGLETON_RESOURCE_NAME, body: { trustDomain, rootsPem: [...rootsPem] } }]);
}

/** The roots of `caDir/root.pem`, each re-encoded as the CA serves it. */
export function readBundleRoots(caDir: string): string[] {
  const path = join(caDir, CA_FILES.rootCert);
  return pemCertificates(readFileSync(path, 'utf8'), path).map((d) => derToPem(d, 'CERTIFICATE'));
}

/**
 * What a root rotation starts from: the new root, and the next intermediate
 * it signed from the CSR in `next/`. Certificates only; the new root's key
 * stays wherever the operator keeps it.
 */
export interface RootRotationMaterial {
  readonly newRootPem: string;
  readonly intermediatePem: string;
}

/**
 * Before a rotation: prepares `next/` (key 0600 + CSR, kept when already
 * prepared) and returns the CSR the new root must sign. Refuses
 * (ROTATION_CONFLICT) while a rotation is in progress.
 */
export async function prepareRootRotation(caDir: string, o: { lockWaitMs?: number } = {}): Promise<{ csrPem: string; trustDomain: string }> {
  return withLifecycleLock(caDir, async () => {
    refuseRunning(caDir);
    const p = await prepareNextIntermediate(caDir);
    return { csrPem: p.csrPem, trustDomain: p.trustDomain };
  }, { waitMs: o.lockWaitMs });
}

/**
 * Where the new root lives (the CLI): signs the prepared CSR with it as a
 * Trellis intermediate of `trustDomain` and returns the rotation material.
 */
export async function signRootRotationCsr(newRoot: RootSigner, csrPem: string, o: { trustDomain: string; now: Date; validityDays?: number }): Promise<RootRotationMaterial> {
  const signed = await signIntermediateCsr(newRoot, csrPem, { now: o.now, validityDays: o.validityDays, source: 'next intermediate CSR', expectTrustDomain: o.trustDomain });
  return Object.freeze({ newRootPem: derToPem(pemCertificates(newRoot.certPem, 'new root')[0]!, 'CERTIFICATE'), intermediatePem: signed.certPem });
}

/** Options of {@link startRootRotation}. */
export interface StartRotationOptions {
  /** Wait this long for another process's lifecycle step (default 0: refuse at once). */
  lockWaitMs?: number;
  material: RootRotationMaterial;
  now: Date;
  reloadGraceSeconds?: number;
}

function refuseRunning(caDir: string): void {
  const existing = loadRootRotationState(caDir);
  if (existing && existing.phase !== 'done') {
    throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `a root rotation started at ${existing.startedAt} is in phase ${existing.phase}; run "trellis ca rotate-root" again to advance it`, { phase: existing.phase });
  }
}

/** Reads the material's certificates, refusing (BAD_ROTATION_MATERIAL) anything that is not a self-signed CA root valid now and an intermediate it signed. */
export function checkRotationMaterial(m: RootRotationMaterial, now: Date): { newRoot: CaCertificate; intermediate: CaCertificate } {
  const bad = (msg: string, cause?: unknown): LifecycleError => new LifecycleError(LifecycleErrorCode.BAD_ROTATION_MATERIAL, msg, {}, cause ? { cause } : undefined);
  let newRoot: CaCertificate;
  let intermediate: CaCertificate;
  try {
    const roots = pemCertificates(m.newRootPem, 'newRootPem');
    const ints = pemCertificates(m.intermediatePem, 'intermediatePem');
    if (roots.length !== 1) throw bad(`newRootPem must hold exactly one certificate, found ${roots.length}`);
    if (ints.length !== 1) throw bad(`intermediatePem must hold exactly one certificate, found ${ints.length}`);
    newRoot = readCaCertificate(roots[0]!, 'newRootPem');
    intermediate = readCaCertificate(ints[0]!, 'intermediatePem');
  } catch (err) {
    if (err instanceof LifecycleError) throw err;
    throw bad(`the rotation material is not readable: ${(err as Error).message}`, err);
  }
  if (!newRoot.selfSigned || !newRoot.facts.basicConstraints.ca || !newRoot.facts.keyUsage.keyCertSign) throw bad('the new root is not a self-signed CA certificate with keyCertSign');
  if (now < newRoot.facts.notBefore || now >= newRoot.facts.notAfter) throw bad(`the new root is not valid now (${newRoot.facts.notBefore.toISOString()} .. ${newRoot.facts.notAfter.toISOString()})`);
  try {
    verifyCaChain(intermediate, [], [newRoot], now);
  } catch (err) {
    throw bad(`the intermediate is not signed by the new root: ${(err as Error).message}`, err);
  }
  return { newRoot, intermediate };
}

/**
 * Phase 1: puts the new root beside the old one(s) in `root.pem`, installs
 * the intermediate it signed into `next/` (for the key prepared there, see
 * {@link prepareRootRotation}) and saves the state. Refuses
 * ROTATION_CONFLICT while another rotation is running or when the "new" root
 * is already trusted, BAD_ROTATION_MATERIAL for unusable certificates, and
 * the install's CA codes (KEY_MISMATCH, CHAIN_INVALID) for an intermediate
 * that is not for `next/`; a refused start leaves the CA dir as it was.
 */
export async function startRootRotation(caDir: string, o: StartRotationOptions): Promise<RootRotationState> {
  return withLifecycleLock(caDir, () => startLocked(caDir, o), { waitMs: o.lockWaitMs });
}

async function startLocked(caDir: string, o: StartRotationOptions): Promise<RootRotationState> {
  refuseRunning(caDir);
  const current = readCurrentIntermediate(caDir);
  const { newRoot } = checkRotationMaterial(o.material, o.now);
  const oldRoots = readBundleRoots(caDir);
  const newRootPem = newRoot.pem;
  if (oldRoots.includes(newRootPem)) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, 'the new root is already in the trust bundle', {});
  const rootPath = join(caDir, CA_FILES.rootCert);
  const rootFileBefore = readFileSync(rootPath, 'utf8');
  writeCaFiles(caDir, [{ name: CA_FILES.rootCert, contents: [...oldRoots, newRootPem].join(''), mode: 0o644 }]);
  try {
    installNextIntermediate(caDir, o.material.intermediatePem, { now: o.now, source: 'the rotation\'s next intermediate' });
  } catch (err) {
    // Fail closed and leave nothing half done: the bundle goes back to what it was.
    writeCaFiles(caDir, [{ name: CA_FILES.rootCert, contents: rootFileBefore, mode: 0o644 }]);
    throw err;
  }
  const state: RootRotationState = Object.freeze({
    version: 1,
    phase: 'bundle',
    trustDomain: current.trustDomain,
    startedAt: o.now.toISOString(),
    phaseSince: o.now.toISOString(),
    oldRootsPem: Object.freeze(oldRoots),
    newRootPem,
    switchedAt: null,
    reloadGraceSeconds: o.reloadGraceSeconds ?? 60,
  });
  saveRootRotationState(caDir, state);
  auditLifecycle(caDir, 'root-rotation.started', o.now, { newRoot: newRoot.facts.subjectText, newRootSerial: newRoot.facts.serialHex, roots: oldRoots.length + 1 });
  return state;
}

/**
 * The local form (`trellis ca rotate-root --ca-dir`): whoever can write the
 * CA dir holds the authority, so the new root in `newRootDir` (created there
 * when empty) signs the prepared CSR right here and the rotation starts.
 * The state records no path; only certificates enter the CA dir.
 */
export async function startRootRotationWithRootDir(caDir: string, newRootDir: string, o: { now: Date; keyType?: CaKeyType; reloadGraceSeconds?: number; lockWaitMs?: number; validityDays?: number }): Promise<RootRotationState> {
  const prepared = await prepareRootRotation(caDir, { lockWaitMs: o.lockWaitMs });
  const root = await ensureNewRoot(newRootDir, { trustDomain: prepared.trustDomain, now: o.now, keyType: o.keyType });
  const material = await signRootRotationCsr(root, prepared.csrPem, { trustDomain: prepared.trustDomain, now: o.now, validityDays: o.validityDays });
  return startRootRotation(caDir, { material, now: o.now, reloadGraceSeconds: o.reloadGraceSeconds, lockWaitMs: o.lockWaitMs });
}

/** Gathers what the decision needs: the bundle version and the audit log. */
export function observeRotation(caDir: string, state: RootRotationState, proxies: readonly ObservedProxy[] | null, now: Date): RotationObservation {
  const expectedBundleVersion = bundleVersion(state.trustDomain, [...state.oldRootsPem, state.newRootPem]);
  const cutoff = oldLeafCutoff(state);
  const oldLeaves = cutoff ? unexpiredIssuedBefore(readAuditLog(join(caDir, CA_FILES.auditLog)), cutoff, now) : null;
  return { now, expectedBundleVersion, proxies, oldLeaves };
}

/** The outcome of one step. */
export interface RotationStep {
  readonly state: RootRotationState;
  readonly decision: RotationDecision;
  /** The action applied in this step ('none' when the phase is still waiting). */
  readonly applied: RotationDecision['action'];
}

/**
 * Decides and, when the gate is met, applies one step. Refuses
 * (ROTATION_CONFLICT) when no rotation was started.
 */
export async function stepRootRotation(caDir: string, proxies: readonly ObservedProxy[] | null, now: Date, o: { lockWaitMs?: number } = {}): Promise<RotationStep> {
  return withLifecycleLock(caDir, () => stepLocked(caDir, proxies, now), { waitMs: o.lockWaitMs });
}

async function stepLocked(caDir: string, proxies: readonly ObservedProxy[] | null, now: Date): Promise<RotationStep> {
  const state = loadRootRotationState(caDir);
  if (!state) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `no root rotation was started in ${caDir} (run "trellis ca rotate-root --ca-dir ${caDir} --root-dir NEW_ROOT_DIR")`, {});
  const decision = decideRootRotation(state, observeRotation(caDir, state, proxies, now));
  if (decision.action === 'switch-intermediate') {
    // The intermediate the new root signed at the start waits in next/; nothing else may be activated here.
    const slots = readIntermediateSlots(caDir);
    const newRoot = readCaCertificate(pemCertificates(state.newRootPem, 'new root')[0]!, 'new root');
    let signedByNewRoot = false;
    if (slots.next) {
      try {
        verifyCaChain(slots.next, [], [newRoot], now);
        signedByNewRoot = true;
      } catch {
        signedByNewRoot = false;
      }
    }
    if (!signedByNewRoot) {
      throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `${join(caDir, 'next')} does not hold an intermediate signed by the new root; sign its CSR with the new root (trellis ca prepare-intermediate --dir ${caDir} --root-dir NEW_ROOT_DIR), then run trellis ca rotate-root again`, { dir: caDir });
    }
    activateNextIntermediate(caDir, { now, force: true });
  } else if (decision.action === 'drop-old-root') {
    const newRoot = readCaCertificate(pemCertificates(state.newRootPem, 'new root')[0]!, 'new root');
    if (now >= newRoot.facts.notAfter) throw new LifecycleError(LifecycleErrorCode.ROOT_UNAVAILABLE, 'the new root has expired; the old root stays', {});
    // Never drop the root the CA still issues under (an intermediate activated by hand after the switch).
    const current = readCurrentIntermediate(caDir);
    const chain = pemCertificates(readFileSync(join(caDir, CA_FILES.chain), 'utf8'), join(caDir, CA_FILES.chain)).slice(1).map((d, i) => readCaCertificate(d, `chain ${i + 2}`));
    try {
      verifyCaChain(current.cert, chain, [newRoot], now);
    } catch (err) {
      throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `the current intermediate does not chain to the new root; the old root stays (re-run the switch: trellis ca prepare-intermediate --dir ${caDir} --root-dir NEW_ROOT_DIR --force, then activate-intermediate)`, {}, { cause: err });
    }
    writeCaFiles(caDir, [{ name: CA_FILES.rootCert, contents: state.newRootPem, mode: 0o644 }]);
  }
  const next = advanceRootRotation(state, decision.action, now);
  if (next !== state) {
    saveRootRotationState(caDir, next);
    auditLifecycle(caDir, decision.action === 'switch-intermediate' ? 'root-rotation.switched' : 'root-rotation.old-root-dropped', now, { phase: next.phase });
  }
  return { state: next, decision, applied: decision.action };
}

/** Reads `/debug/proxies` JSON from the admin server into observed proxies; null when the shape is not understood. */
export function proxiesFromAdmin(body: unknown): ObservedProxy[] | null {
  const list = (body as { proxies?: unknown })?.proxies;
  if (!Array.isArray(list)) return null;
  return list.map((p: Record<string, unknown>) => {
    const types = (p['types'] ?? {}) as Record<string, { ackedVersion?: unknown }>;
    const acked = types['bundle']?.ackedVersion;
    return { id: (p['id'] as number | string) ?? '?', spiffeId: typeof p['spiffeId'] === 'string' ? p['spiffeId'] : null, bundleAckedVersion: typeof acked === 'string' ? acked : null };
  });
}
