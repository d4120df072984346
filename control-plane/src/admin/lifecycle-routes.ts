/**
 * The lifecycle steps the admin API offers: revoke and lift, start or
 * advance a root rotation, the CA status, and a forced re-issue. Each route
 * validates its JSON body (naming the bad field), then calls the same
 * lifecycle function the `--ca-dir` CLI forms call, which writes the CA dir
 * under its `.lifecycle.lock`. Errors are thrown, never answered here: the
 * admin server maps them to HTTP statuses in one place.
 */
import { resolve } from 'node:path';
import { CA_KEY_TYPES, type CaKeyType } from '../ca/key-types';
import { liftInCaDir, revokeInCaDir } from '../lifecycle/revocation-store';
import { caStatusView } from '../lifecycle/ca-status';
import { withLifecycleLock } from '../lifecycle/lifecycle-lock';
import type { ObservedProxy } from '../lifecycle/root-rotation';
import { readBundleRoots, startRootRotation, stepRootRotation } from '../lifecycle/root-rotation-driver';
import { loadRootRotationState } from '../lifecycle/root-rotation-store';
import { AdminError, AdminErrorCode } from './admin-error';

/** How long a route waits for another lifecycle step on the same CA dir (the timer, a CLI) before answering 409. */
const LOCK_WAIT_MS = 10_000;

/** What the routes need from the running control plane. */
export interface LifecycleRouteDeps {
  caDir: string;
  clock: () => Date;
  /** The connected sidecars and the bundle version each ACKed. */
  proxies(): readonly ObservedProxy[];
  /** Re-reads the revocation list now, so a revocation is pushed at once instead of on the next refresh. */
  revocationsChanged(): void;
  /** Asks the matching sidecars to renew with fresh keys, spread over `windowMs`; returns how many were asked. Absent: 404. */
  reissue?(target: { all: true } | { spiffeId: string }, windowMs: number): { sidecars: number; renewBy: { earliest: string | null; latest: string | null } };
}

/** A route: method, path, and what it does with the parsed body. */
export interface AdminRoute {
  method: 'GET' | 'POST';
  path: string;
  handle(body: Record<string, unknown>): Promise<unknown> | unknown;
}

/** The lifecycle routes over `deps`. */
export function lifecycleRoutes(deps: LifecycleRouteDeps): AdminRoute[] {
  const routes: AdminRoute[] = [
    { method: 'GET', path: '/lifecycle/status', handle: () => caStatusView(deps.caDir, deps.proxies(), deps.clock()) },
    {
      method: 'POST',
      path: '/lifecycle/revoke',
      handle: async (b) => {
        const target = revocationTargetOf(b);
        const reason = optional(b, 'reason');
        const { entry } = await withLifecycleLock(deps.caDir, () => revokeInCaDir(deps.caDir, target, { now: deps.clock(), reason }), { waitMs: LOCK_WAIT_MS });
        deps.revocationsChanged();
        return { revoked: entry };
      },
    },
    {
      method: 'POST',
      path: '/lifecycle/lift',
      handle: async (b) => {
        const target = revocationTargetOf(b);
        await withLifecycleLock(deps.caDir, () => liftInCaDir(deps.caDir, target, { now: deps.clock() }), { waitMs: LOCK_WAIT_MS });
        deps.revocationsChanged();
        return { lifted: target.spiffeId ?? target.serial };
      },
    },
    {
      method: 'POST',
      path: '/lifecycle/rotate-root',
      handle: async (b) => {
        const rootDir = optional(b, 'rootDir');
        const grace = optionalNumber(b, 'reloadGraceSeconds');
        const keyType = optional(b, 'keyType');
        if (keyType !== undefined && !(CA_KEY_TYPES as readonly string[]).includes(keyType)) throw new AdminError(AdminErrorCode.BAD_BODY, `keyType must be one of ${CA_KEY_TYPES.join(', ')}`, { field: 'keyType' });
        const state = loadRootRotationState(deps.caDir);
        let started = false;
        if (!state || state.phase === 'done') {
          if (rootDir === undefined) throw new AdminError(AdminErrorCode.BAD_BODY, 'rootDir is required to start a root rotation (where the new root is, or will be created)', { field: 'rootDir' });
          await startRootRotation(deps.caDir, { newRootDir: resolve(rootDir), now: deps.clock(), keyType: keyType as CaKeyType | undefined, reloadGraceSeconds: grace, lockWaitMs: LOCK_WAIT_MS });
          started = true;
        }
        const step = await stepRootRotation(deps.caDir, deps.proxies(), deps.clock(), { lockWaitMs: LOCK_WAIT_MS });
        return {
          started,
          phase: step.state.phase,
          applied: step.applied,
          waitingFor: step.decision.waitingFor,
          laggingProxies: step.decision.laggingProxies,
          startedAt: step.state.startedAt,
          phaseSince: step.state.phaseSince,
          switchedAt: step.state.switchedAt,
          roots: readBundleRoots(deps.caDir).length,
        };
      },
    },
  ];
  const reissue = deps.reissue;
  if (reissue) {
    routes.push({
      method: 'POST',
      path: '/lifecycle/reissue',
      handle: (b) => {
        const all = b['all'];
        if (all !== undefined && typeof all !== 'boolean') throw new AdminError(AdminErrorCode.BAD_BODY, 'all must be a boolean', { field: 'all' });
        const spiffeId = optional(b, 'spiffeId');
        if ((all === true) === (spiffeId !== undefined)) throw new AdminError(AdminErrorCode.BAD_BODY, 'give exactly one of all: true or spiffeId', { field: 'spiffeId' });
        const windowSeconds = optionalNumber(b, 'windowSeconds') ?? 60;
        if (windowSeconds < 0 || windowSeconds > 86_400) throw new AdminError(AdminErrorCode.BAD_BODY, 'windowSeconds must be between 0 and 86400', { field: 'windowSeconds' });
        return reissue(all === true ? { all: true } : { spiffeId: spiffeId! }, windowSeconds * 1000);
      },
    });
  }
  return routes;
}

function optional(b: Record<string, unknown>, field: string): string | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') throw new AdminError(AdminErrorCode.BAD_BODY, `${field} must be a non-empty string`, { field });
  return v;
}

function optionalNumber(b: Record<string, unknown>, field: string): number | undefined {
  const v = b[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new AdminError(AdminErrorCode.BAD_BODY, `${field} must be a number`, { field });
  return v;
}

function revocationTargetOf(b: Record<string, unknown>): { spiffeId?: string; serial?: string } {
  const spiffeId = optional(b, 'spiffeId');
  const serial = optional(b, 'serial');
  if ((spiffeId === undefined) === (serial === undefined)) throw new AdminError(AdminErrorCode.BAD_BODY, 'give exactly one of spiffeId or serial', { field: 'spiffeId' });
  return spiffeId !== undefined ? { spiffeId } : { serial };
}
