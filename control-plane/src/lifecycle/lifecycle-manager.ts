/**
 * The control plane's lifecycle timer: on every tick it reloads the CA when
 * its dir changed, prepares / signs / activates the next intermediate when
 * their time has come, and advances a root rotation whose gate is met. The
 * decisions are the pure functions of this folder; this file only calls
 * them on a timer and logs what happened. A failing step is logged and
 * retried on the next tick; it never stops the control plane.
 *
 * With several replicas, only the one that leads (the Lease holder on
 * Kubernetes) takes steps, and each step runs through `runStep`, which
 * commits what it changed to the shared CA state (the Secret) with
 * optimistic concurrency: a new leader decides from the last committed
 * state, so no step is lost or taken twice.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@trellis/shared';
import { CA_FILES } from '../ca/ca-dir';
import { SIGNER_CONFIG_FILE } from '../hsm/signer-config';
import { activateNextIntermediate, prepareNextIntermediate, readIntermediateSlots, signNextIntermediateWithRoot } from './intermediate-slots';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { withLifecycleLock } from './lifecycle-lock';
import type { ReloadingAuthority } from './reloading-authority';
import type { ObservedProxy } from './root-rotation';
import { stepRootRotation } from './root-rotation-driver';
import { loadRootRotationState } from './root-rotation-store';
import { shouldPrepareNextIntermediate } from './rotation-timing';

/** Settings of {@link startLifecycleManager}. */
export interface LifecycleManagerOptions {
  caDir: string;
  /**
   * The root (root.pem + root.key) when it is online; default: the CA dir itself when it holds
   * root.key (a development CA). Otherwise the next intermediate waits for `trellis ca sign-intermediate`.
   */
  rootDir?: string;
  /** Tick interval; default 1 s (ticks are cheap: a few stats unless something is due). */
  intervalMs?: number;
  intermediateValidityDays?: number;
}

/** Collaborators. */
export interface LifecycleManagerDeps {
  authority: ReloadingAuthority;
  logger: Logger;
  clock?: () => Date;
  /** The connected sidecars (of every replica) and the bundle version each ACKed; null when unknown. */
  proxies?: () => readonly ObservedProxy[] | null;
  /** True while this replica drives the singleton work; default always (one replica, or replicas on one CA dir under its lock). */
  isLeader?: () => boolean;
  /** Runs one step and commits what it changed to the shared CA state; default: runs it (the CA dir is the state). */
  runStep?: <T>(step: () => Promise<T>) => Promise<T>;
}

/** A running manager. */
export interface LifecycleManager {
  /** Runs one tick now (tests and the timer). */
  tick(): Promise<void>;
  stop(): void;
}

/** Starts the timer; the first tick runs at once. */
export function startLifecycleManager(o: LifecycleManagerOptions, deps: LifecycleManagerDeps): LifecycleManager {
  const clock = deps.clock ?? (() => new Date());
  const log = deps.logger;
  let running: Promise<void> | null = null;
  let warnedWaiting = '';
  let lastWaiting = '';

  // A development CA keeps root.key beside the intermediate (`trellis ca init`): then the root is online.
  const implicitRoot = o.rootDir === undefined && existsSync(join(o.caDir, CA_FILES.rootKey));
  let rootDir = o.rootDir ?? (implicitRoot ? o.caDir : undefined);

  const intermediateStep = async (now: Date): Promise<boolean> => {
    if (existsSync(join(o.caDir, SIGNER_CONFIG_FILE))) return false;
    // During a root rotation the rotation owns the intermediate.
    const rotation = loadRootRotationState(o.caDir);
    if (rotation && rotation.phase !== 'done') return false;
    const slots = readIntermediateSlots(o.caDir);
    if (slots.nextState === 'empty') {
      if (!shouldPrepareNextIntermediate(now, slots.current.cert.facts).yes) return false;
      const p = await prepareNextIntermediate(o.caDir);
      log.info('next intermediate prepared', { csr: p.csrPath, currentNotAfter: slots.current.cert.facts.notAfter.toISOString() });
      return intermediateStep(now);
    }
    if (slots.nextState === 'prepared') {
      if (rootDir) {
        try {
          const cert = await signNextIntermediateWithRoot(o.caDir, rootDir, { now, validityDays: o.intermediateValidityDays });
          log.info('next intermediate signed with the online root', { notAfter: cert.facts.notAfter.toISOString() });
          return intermediateStep(now);
        } catch (err) {
          // root.key in the CA dir that no longer signs for root.pem (e.g. after a root rotation): treat the root as offline.
          if (!implicitRoot || !(err instanceof LifecycleError && err.code === LifecycleErrorCode.ROOT_UNAVAILABLE)) throw err;
          log.warn('root.key in the CA dir cannot sign for root.pem; waiting for the offline root', { error: err });
          rootDir = undefined;
        }
      }
      if (warnedWaiting !== slots.nextCsrPath) {
        warnedWaiting = slots.nextCsrPath ?? '';
        log.warn('next intermediate waits for the offline root: run "trellis ca sign-intermediate" where the root lives, then "trellis ca activate-intermediate"', { csr: slots.nextCsrPath, currentNotAfter: slots.current.cert.facts.notAfter.toISOString() });
      }
      return false;
    }
    const r = activateNextIntermediate(o.caDir, { now });
    if (r.activated) log.info('next intermediate activated', { notAfter: r.current.facts.notAfter.toISOString(), reason: r.decision.reason });
    return r.activated;
  };

  const rotationStep = async (now: Date): Promise<boolean> => {
    const state = loadRootRotationState(o.caDir);
    if (!state || state.phase === 'done') return false;
    const step = await runStep(() => stepRootRotation(o.caDir, deps.proxies ? deps.proxies() : null, now));
    if (step.applied !== 'none') log.info('root rotation advanced', { phase: step.state.phase, applied: step.applied });
    else if (step.decision.waitingFor !== lastWaiting) log.info('root rotation waiting', { phase: step.state.phase, waitingFor: step.decision.waitingFor });
    lastWaiting = step.decision.waitingFor;
    return step.applied !== 'none';
  };

  const runStep = deps.runStep ?? (<T>(step: () => Promise<T>): Promise<T> => step());
  let leading: boolean | null = null;
  const tick = (): Promise<void> => {
    if (running) return running;
    running = (async () => {
      const now = clock();
      const leader = deps.isLeader ? deps.isLeader() : true;
      if (leader !== leading) {
        if (leading !== null || !leader) log.info(leader ? 'leading the CA lifecycle: rotation steps are taken here' : 'not leading: CA lifecycle steps are taken by the leader', {});
        leading = leader;
      }
      const steps = leader ? ([['intermediate rotation', (n: Date) => runStep(() => withLifecycleLock(o.caDir, () => intermediateStep(n)))], ['root rotation', rotationStep]] as const) : [];
      for (const [what, step] of steps) {
        try {
          await step(now);
        } catch (err) {
          if (err instanceof LifecycleError && err.code === LifecycleErrorCode.ROTATION_CONFLICT) log.debug(`${what} step skipped: the CA dir is busy`, { error: err });
          else log.error(`${what} step failed; retrying on the next tick`, { error: err });
        }
      }
      await deps.authority.refresh();
    })().finally(() => {
      running = null;
    });
    return running;
  };

  void tick();
  const timer = setInterval(() => void tick(), o.intervalMs ?? 1000);
  timer.unref();
  return {
    tick,
    stop() {
      clearInterval(timer);
    },
  };
}
