/**
 * The CA's state as `trellis ca status` shows it: roots, the current and
 * next intermediate, and any root rotation with what its current phase
 * waits for. One view, read from the CA dir, used both by the CLI's
 * `--ca-dir` form and by the control plane's admin API.
 */
import { readIntermediateSlots } from './intermediate-slots';
import { decideRootRotation, type ObservedProxy } from './root-rotation';
import { observeRotation } from './root-rotation-driver';
import { loadRootRotationState } from './root-rotation-store';

/** What `ca status` reports (JSON-ready). */
export interface CaStatusView {
  trustDomain: string;
  roots: Array<{ subject: string; notAfter: string }>;
  intermediate: { subject: string; notAfter: string };
  next: { state: string; notAfter: string | null; csr: string | null };
  rootRotation: {
    phase: string;
    startedAt: string;
    phaseSince: string;
    switchedAt: string | null;
    nextAction: string;
    waitingFor: string;
    laggingProxies: ReadonlyArray<unknown>;
  } | null;
}

/** Reads the CA dir; `proxies` are the connected sidecars' ACKs (null when unknown: the bundle gate then waits). */
export function caStatusView(caDir: string, proxies: readonly ObservedProxy[] | null, now: Date): CaStatusView {
  const slots = readIntermediateSlots(caDir);
  const state = loadRootRotationState(caDir);
  let rotation: CaStatusView['rootRotation'] = null;
  if (state) {
    const d = decideRootRotation(state, observeRotation(caDir, state, proxies, now));
    rotation = { phase: state.phase, startedAt: state.startedAt, phaseSince: state.phaseSince, switchedAt: state.switchedAt, nextAction: d.action, waitingFor: d.waitingFor, laggingProxies: d.laggingProxies };
  }
  return {
    trustDomain: slots.current.trustDomain,
    roots: slots.current.roots.map((r) => ({ subject: r.facts.subjectText, notAfter: r.facts.notAfter.toISOString() })),
    intermediate: { subject: slots.current.cert.facts.subjectText, notAfter: slots.current.cert.facts.notAfter.toISOString() },
    next: { state: slots.nextState, notAfter: slots.next?.facts.notAfter.toISOString() ?? null, csr: slots.nextCsrPath ?? null },
    rootRotation: rotation,
  };
}
