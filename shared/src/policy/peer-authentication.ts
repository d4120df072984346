/**
 * PeerAuthentication resolution, as Istio does it: start from the control
 * plane's default mode, then apply the mesh-wide, namespace-wide and workload
 * policies whose mode is not UNSET; a port-level mode of the workload policy
 * overrides for that port (UNSET there takes the workload's effective mode).
 * When several policies compete at one level, the oldest wins.
 */
import { labelsMatch, refOf, type PolicyRef, type PolicySet } from './policy-set';
import type { EffectiveMtlsMode, PeerAuthentication, PolicyWorkload } from './policy-types';

/** Options shared by the PeerAuthentication decisions. */
export interface PeerAuthenticationOptions {
  /** Namespace whose selector-less policy is mesh-wide (Trellis default `trellis-system`). */
  rootNamespace: string;
  /** Mode when no policy decides (STRICT in Trellis; Istio uses PERMISSIVE). */
  defaultMode: EffectiveMtlsMode;
}

/** The level that decided a mode. */
export type PeerAuthenticationScope = 'default' | 'mesh' | 'namespace' | 'workload' | 'port';

/** An effective mode and what decided it. */
export interface EffectivePeerAuthentication {
  readonly mode: EffectiveMtlsMode;
  readonly decidedBy: { readonly policy?: PolicyRef; readonly scope: PeerAuthenticationScope };
}

/** What the control plane pushes to a sidecar: the workload mode plus per-port overrides. */
export interface ResolvedPeerAuthentication extends EffectivePeerAuthentication {
  /** Container port → effective mode, for every port the workload policy names. */
  readonly portModes: Readonly<Record<number, EffectiveMtlsMode>>;
}

/** The three competing levels for a workload (oldest policy per level), before modes are applied. */
export function peerAuthenticationLevels(set: PolicySet, workload: PolicyWorkload, opts: Pick<PeerAuthenticationOptions, 'rootNamespace'>): { mesh?: PeerAuthentication; namespace?: PeerAuthentication; workload?: PeerAuthentication } {
  const root = opts.rootNamespace;
  const list = set.peerAuthentications; // already oldest first
  const mesh = list.find((p) => p.metadata.namespace === root && !p.matchLabels);
  const ns = workload.namespace === root ? undefined : list.find((p) => p.metadata.namespace === workload.namespace && !p.matchLabels);
  // Selector policies in the root namespace are ignored (parse warns about them).
  const wl = workload.namespace === root ? undefined : list.find((p) => p.metadata.namespace === workload.namespace && p.matchLabels !== undefined && labelsMatch(p.matchLabels, workload));
  return { ...(mesh ? { mesh } : {}), ...(ns ? { namespace: ns } : {}), ...(wl ? { workload: wl } : {}) };
}

/**
 * The mTLS mode for `workload` on `port` (undefined: the workload-level mode).
 * Pure; never throws for a valid set.
 */
export function effectivePeerAuthentication(set: PolicySet, workload: PolicyWorkload, port: number | undefined, opts: PeerAuthenticationOptions): EffectivePeerAuthentication {
  const levels = peerAuthenticationLevels(set, workload, opts);
  let result: EffectivePeerAuthentication = { mode: opts.defaultMode, decidedBy: { scope: 'default' } };
  for (const scope of ['mesh', 'namespace', 'workload'] as const) {
    const p = levels[scope];
    if (p && p.mtlsMode !== 'UNSET') result = { mode: p.mtlsMode, decidedBy: { policy: refOf(p), scope } };
  }
  if (port !== undefined && levels.workload) {
    const portMode = levels.workload.portLevelMtls[String(port)];
    if (portMode !== undefined && portMode !== 'UNSET') result = { mode: portMode, decidedBy: { policy: refOf(levels.workload), scope: 'port' } };
  }
  return result;
}

/** The workload-level mode and every port override in one object. */
export function resolvePeerAuthentication(set: PolicySet, workload: PolicyWorkload, opts: PeerAuthenticationOptions): ResolvedPeerAuthentication {
  const base = effectivePeerAuthentication(set, workload, undefined, opts);
  const wl = peerAuthenticationLevels(set, workload, opts).workload;
  const portModes: Record<number, EffectiveMtlsMode> = {};
  if (wl) {
    for (const [port, mode] of Object.entries(wl.portLevelMtls)) portModes[Number(port)] = mode === 'UNSET' ? base.mode : mode;
  }
  return Object.freeze({ ...base, portModes: Object.freeze(portModes) });
}

/** The mode for `port` from a resolved object (what a sidecar does with what it was pushed). */
export function modeForPort(resolved: ResolvedPeerAuthentication, port: number): EffectiveMtlsMode {
  return resolved.portModes[port] ?? resolved.mode;
}
