/**
 * Applies the root rotation's decisions to a CA dir: start (new root beside
 * the old in `root.pem`), switch (an intermediate under the new root becomes
 * current), drop (only the new root stays). Each step saves the state after
 * the files, so a crash between the two repeats a step that is safe to
 * repeat. The control plane (or `trellis ca rotate-root`, run again) calls
 * {@link stepRootRotation}; it never advances on an unobserved gate.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { contentVersion, SINGLETON_RESOURCE_NAME } from '@trellis/shared';
import { readCaCertificate, verifyCaChain } from '../ca/ca-chain';
import { CA_FILES, writeCaFiles } from '../ca/ca-dir';
import type { CaKeyType } from '../ca/key-types';
import { pemCertificates, toPem } from '../ca/pem';
import { readAuditLog, unexpiredIssuedBefore } from './audit-index';
import { createRootCertificate, generateCaKey } from './ca-material';
import { activateNextIntermediate, prepareNextIntermediate, readCurrentIntermediate, signNextIntermediateWithRoot } from './intermediate-slots';
import { auditLifecycle } from './lifecycle-audit';
import { withLifecycleLock } from './lifecycle-lock';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { loadRootSigner } from './root-dir';
import { advanceRootRotation, decideRootRotation, oldLeafCutoff, type ObservedProxy, type RootRotationState, type RotationDecision, type RotationObservation } from './root-rotation';
import { loadRootRotationState, saveRootRotationState } from './root-rotation-store';

/** The version the control plane gives a bundle of `rootsPem` (its trust-bundle resource). */
export function bundleVersion(trustDomain: string, rootsPem: readonly string[]): string {
  return contentVersion([{ name: SINGLETON_RESOURCE_NAME, body: { trustDomain, rootsPem: [...rootsPem] } }]);
}

/** The roots of `caDir/root.pem`, each re-encoded as the CA serves it. */
export function readBundleRoots(caDir: string): string[] {
  const path = join(caDir, CA_FILES.rootCert);
  return pemCertificates(readFileSync(path, 'utf8'), path).map((d) => toPem(d, 'CERTIFICATE'));
}

/** Options of {@link startRootRotation}. */
export interface StartRotationOptions {
  /** Wait this long for another process's lifecycle step (default 0: refuse at once). */
  lockWaitMs?: number;
  /** Holds the new root (root.pem + root.key); created there when empty. */
  newRootDir: string;
  now: Date;
  keyType?: CaKeyType;
  reloadGraceSeconds?: number;
}

/**
 * Phase 1: puts the new root beside the old one(s) in `root.pem` and saves
 * the state. Refuses (ROTATION_CONFLICT) while another rotation is running
 * or when the "new" root is already trusted.
 */
export async function startRootRotation(caDir: string, o: StartRotationOptions): Promise<RootRotationState> {
  return withLifecycleLock(caDir, () => startLocked(caDir, o), { waitMs: o.lockWaitMs });
}

async function startLocked(caDir: string, o: StartRotationOptions): Promise<RootRotationState> {
  const existing = loadRootRotationState(caDir);
  if (existing && existing.phase !== 'done') {
    throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `a root rotation started at ${existing.startedAt} is in phase ${existing.phase}; run "trellis ca rotate-root" again to advance it`, { phase: existing.phase });
  }
  const current = readCurrentIntermediate(caDir);
  if (!existsSync(join(o.newRootDir, CA_FILES.rootCert))) {
    mkdirSync(o.newRootDir, { recursive: true, mode: 0o700 });
    const key = await generateCaKey(o.keyType ?? 'ec-p256');
    const certPem = await createRootCertificate({ trustDomain: current.trustDomain, key, now: o.now, generation: o.now.toISOString().slice(0, 10) });
    writeCaFiles(o.newRootDir, [
      { name: CA_FILES.rootKey, contents: key.pem, mode: 0o600 },
      { name: CA_FILES.rootCert, contents: certPem, mode: 0o644 },
    ]);
  }
  const root = await loadRootSigner(o.newRootDir, o.now);
  const oldRoots = readBundleRoots(caDir);
  const newRootPem = toPem(root.cert.der, 'CERTIFICATE');
  if (oldRoots.includes(newRootPem)) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `the root in ${o.newRootDir} is already in the trust bundle`, {});
  writeCaFiles(caDir, [{ name: CA_FILES.rootCert, contents: [...oldRoots, newRootPem].join(''), mode: 0o644 }]);
  const state: RootRotationState = Object.freeze({
    version: 1,
    phase: 'bundle',
    trustDomain: current.trustDomain,
    startedAt: o.now.toISOString(),
    phaseSince: o.now.toISOString(),
    oldRootsPem: Object.freeze(oldRoots),
    newRootPem,
    newRootDir: o.newRootDir,
    switchedAt: null,
    reloadGraceSeconds: o.reloadGraceSeconds ?? 60,
  });
  saveRootRotationState(caDir, state);
  auditLifecycle(caDir, 'root-rotation.started', o.now, { newRoot: root.cert.facts.subjectText, newRootSerial: root.cert.facts.serialHex, roots: oldRoots.length + 1 });
  return state;
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
export async function stepRootRotation(caDir: string, proxies: readonly ObservedProxy[] | null, now: Date, o: { intermediateValidityDays?: number; lockWaitMs?: number } = {}): Promise<RotationStep> {
  return withLifecycleLock(caDir, () => stepLocked(caDir, proxies, now, o), { waitMs: o.lockWaitMs });
}

async function stepLocked(caDir: string, proxies: readonly ObservedProxy[] | null, now: Date, o: { intermediateValidityDays?: number }): Promise<RotationStep> {
  const state = loadRootRotationState(caDir);
  if (!state) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `no root rotation was started in ${caDir} (run "trellis ca rotate-root --ca-dir ${caDir} --new-root-dir DIR")`, {});
  const decision = decideRootRotation(state, observeRotation(caDir, state, proxies, now));
  if (decision.action === 'switch-intermediate') {
    await prepareNextIntermediate(caDir, { force: true });
    await signNextIntermediateWithRoot(caDir, state.newRootDir, { now, validityDays: o.intermediateValidityDays });
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
      throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `the current intermediate does not chain to the new root; the old root stays (re-run the switch: trellis ca prepare-intermediate --dir ${caDir} --root-dir ${state.newRootDir} --force, then activate-intermediate)`, {}, { cause: err });
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
