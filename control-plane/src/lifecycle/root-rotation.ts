/**
 * The root rotation as a pure phase machine over persisted state. Each
 * phase ends only when what it waits for has been observed:
 *
 * 1. `bundle`: the new root is in the trust bundle beside the old one; waits
 *    until every connected sidecar has ACKed the bundle version holding both.
 * 2. `renew`: the CA issues from an intermediate under the new root and the
 *    sidecars renew; waits until no unexpired leaf issued before the switch
 *    (plus a reload grace) remains, which the CA's audit log knows.
 * 3. `done`: the old root has left the bundle.
 *
 * {@link decideRootRotation} says what to do next and what the phase waits
 * for; the driver (root-rotation-driver.ts) applies it to the CA dir. A
 * restart re-reads the state and decides again, so it resumes where it was.
 */

/** Persisted phases. */
export type RootRotationPhase = 'bundle' | 'renew' | 'done';

/** The persisted state (JSON, see root-rotation-store.ts). */
export interface RootRotationState {
  readonly version: 1;
  readonly phase: RootRotationPhase;
  readonly trustDomain: string;
  readonly startedAt: string;
  readonly phaseSince: string;
  /** The roots being replaced (PEM). */
  readonly oldRootsPem: readonly string[];
  /**
   * The new root (PEM). Its key never reaches the CA dir: the intermediate it
   * signed waits in `next/` from the start and is activated at the switch.
   */
  readonly newRootPem: string;
  /** When the CA switched to the intermediate under the new root (phase `renew` on). */
  readonly switchedAt: string | null;
  /** How long after `switchedAt` a control plane may still issue from the old intermediate (its reload interval). */
  readonly reloadGraceSeconds: number;
}

/** One connected sidecar as the control plane reports it. */
export interface ObservedProxy {
  readonly id: string | number;
  readonly spiffeId: string | null;
  readonly bundleAckedVersion: string | null;
}

/** What has been observed, at `now`. */
export interface RotationObservation {
  readonly now: Date;
  /** The version of the bundle holding both roots. */
  readonly expectedBundleVersion: string;
  /** Connected sidecars, or null when the control plane could not be asked. */
  readonly proxies: readonly ObservedProxy[] | null;
  /** Leaves issued before the switch (+ grace) still unexpired at `now`. */
  readonly oldLeaves: { count: number; lastNotAfter: Date | null } | null;
}

/** What the driver must do now. */
export type RotationAction = 'none' | 'switch-intermediate' | 'drop-old-root';

/** A decision and its reason, for `trellis ca status`. */
export interface RotationDecision {
  readonly action: RotationAction;
  /** What the current phase waits for, in words; empty when it can advance. */
  readonly waitingFor: string;
  /** Sidecars that have not ACKed the two-root bundle yet (phase `bundle`). */
  readonly laggingProxies: readonly ObservedProxy[];
}

/** The moment before which every issued leaf counts as issued under the old root. */
export function oldLeafCutoff(state: RootRotationState): Date | null {
  if (!state.switchedAt) return null;
  return new Date(Date.parse(state.switchedAt) + state.reloadGraceSeconds * 1000);
}

/**
 * Decides the next step. Fails closed: when the sidecars or the audit log
 * could not be observed, the answer is to wait, never to advance.
 */
export function decideRootRotation(state: RootRotationState, obs: RotationObservation): RotationDecision {
  switch (state.phase) {
    case 'bundle': {
      if (obs.proxies === null) return { action: 'none', waitingFor: 'the control plane to report which sidecars ACKed the two-root bundle (pass --admin)', laggingProxies: [] };
      const lagging = obs.proxies.filter((p) => p.bundleAckedVersion !== obs.expectedBundleVersion);
      if (lagging.length > 0) {
        return { action: 'none', waitingFor: `${lagging.length} of ${obs.proxies.length} connected sidecar(s) to ACK bundle version ${obs.expectedBundleVersion}`, laggingProxies: lagging };
      }
      return { action: 'switch-intermediate', waitingFor: '', laggingProxies: [] };
    }
    case 'renew': {
      const cutoff = oldLeafCutoff(state);
      if (cutoff && obs.now < cutoff) return { action: 'none', waitingFor: `the reload grace to pass (${cutoff.toISOString()}) so no control plane still issues from the old intermediate`, laggingProxies: [] };
      if (obs.oldLeaves === null) return { action: 'none', waitingFor: 'the audit log to tell which leaves were issued under the old root', laggingProxies: [] };
      if (obs.oldLeaves.count > 0) {
        return { action: 'none', waitingFor: `${obs.oldLeaves.count} leaf/leaves issued under the old root to expire (last at ${obs.oldLeaves.lastNotAfter?.toISOString()})`, laggingProxies: [] };
      }
      return { action: 'drop-old-root', waitingFor: '', laggingProxies: [] };
    }
    case 'done':
      return { action: 'none', waitingFor: '', laggingProxies: [] };
  }
}

/** The state after `action` was applied at `now`. */
export function advanceRootRotation(state: RootRotationState, action: RotationAction, now: Date): RootRotationState {
  switch (action) {
    case 'none':
      return state;
    case 'switch-intermediate':
      if (state.phase !== 'bundle') return state;
      return Object.freeze({ ...state, phase: 'renew', phaseSince: now.toISOString(), switchedAt: now.toISOString() });
    case 'drop-old-root':
      if (state.phase !== 'renew') return state;
      return Object.freeze({ ...state, phase: 'done', phaseSince: now.toISOString() });
  }
}
