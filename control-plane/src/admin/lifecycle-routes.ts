/**
 * The lifecycle steps the admin API offers: revoke and lift, prepare, start
 * or advance a root rotation, the CA status, and a forced re-issue. Each
 * route accepts only its own JSON fields (naming the bad one) and never a
 * filesystem path, then calls the same lifecycle function the `--ca-dir` CLI
 * forms call, which writes the CA dir under its `.lifecycle.lock`. Errors
 * are thrown, never answered here: the admin server maps them to HTTP
 * statuses in one place. The caller is an authenticated admin (`ctx.identity`).
 */
import { readCaCertificate } from '../ca/ca-chain';
import { pemCertificates } from '../ca/pem';
import { withRevocation } from '../lifecycle/revocation-store';
import { liftRevocation, pruneRevocations, type RevocationList } from '../lifecycle/revocation-list';
import type { SharedDocument } from '../state/shared-document';
import { caStatusView } from '../lifecycle/ca-status';
import { auditLifecycle } from '../lifecycle/lifecycle-audit';
import { readCurrentIntermediate } from '../lifecycle/intermediate-slots';
import { LifecycleError, LifecycleErrorCode } from '../lifecycle/lifecycle-error';
import type { ObservedProxy } from '../lifecycle/root-rotation';
import { prepareRootRotation, readBundleRoots, startRootRotation, stepRootRotation, type RootRotationMaterial } from '../lifecycle/root-rotation-driver';
import { verifyRootRotationProof } from '../lifecycle/root-rotation-proof';
import { loadRootRotationState } from '../lifecycle/root-rotation-store';
import { AdminError, AdminErrorCode } from './admin-error';

/** How long a route waits for another lifecycle step on the same CA dir (the timer, a CLI) before answering 409. */
const LOCK_WAIT_MS = 10_000;

/**
 * Who may start a root rotation over the admin API: `root-key` (default)
 * also wants the rotation material signed with a current root's key (see
 * root-rotation-proof.ts); `admin-identity` takes the admin identity alone.
 */
export type RootRotationAuth = 'root-key' | 'admin-identity';

/** What the routes need from the running control plane. */
export interface LifecycleRouteDeps {
  caDir: string;
  clock: () => Date;
  /** Default `root-key`. */
  rootRotationAuth?: RootRotationAuth;
  /** The connected sidecars and the bundle version each ACKed. */
  proxies(): readonly ObservedProxy[];
  /** The revocation list every replica shares (the CA dir's file, or the API server's ConfigMap). */
  revocations: SharedDocument<RevocationList>;
  /** Pushes the list now, so a revocation reaches this replica's sidecars at once (the others follow the shared list). */
  revocationsChanged(): void;
  /** Runs a lifecycle step and commits what it changed to the shared CA state (the Secret on Kubernetes); default: runs it. */
  runStep?<T>(step: () => Promise<T>): Promise<T>;
  /** Asks the matching sidecars (of every replica) to renew with fresh keys, spread over `windowMs`; returns how many here were asked. Absent: 404. */
  reissue?(target: { all: true } | { spiffeId: string }, windowMs: number): Promise<{ sidecars: number; renewBy: { earliest: string | null; latest: string | null } }>;
}

/** Who is asking: the SPIFFE ID the admin server authenticated; and the request's query parameters. */
export interface AdminRequestContext {
  identity: string;
  query?: URLSearchParams;
}

/** A route: method, path, and what it does with the parsed body. */
export interface AdminRoute {
  method: 'GET' | 'POST';
  path: string;
  handle(body: Record<string, unknown>, ctx: AdminRequestContext): Promise<unknown> | unknown;
}

/** The lifecycle routes over `deps`. */
export function lifecycleRoutes(deps: LifecycleRouteDeps): AdminRoute[] {
  const rootAuth: RootRotationAuth = deps.rootRotationAuth ?? 'root-key';
  const runStep = <T>(step: () => Promise<T>): Promise<T> => (deps.runStep ? deps.runStep(step) : step());
  const routes: AdminRoute[] = [
    { method: 'GET', path: '/lifecycle/status', handle: () => caStatusView(deps.caDir, deps.proxies(), deps.clock()) },
    {
      method: 'POST',
      path: '/lifecycle/revoke',
      handle: async (b) => {
        onlyFields(b, ['spiffeId', 'serial', 'reason']);
        const target = revocationTargetOf(b);
        const reason = optional(b, 'reason');
        const now = deps.clock();
        const list = await deps.revocations.update((l) => withRevocation(l, target, { now, reason, caDir: deps.caDir }));
        const entry = list.entries[list.entries.length - 1]!;
        auditLifecycle(deps.caDir, 'revocation.added', now, { kind: entry.kind, value: entry.value, reason: entry.reason, expiresAt: entry.expiresAt });
        deps.revocationsChanged();
        return { revoked: entry };
      },
    },
    {
      method: 'POST',
      path: '/lifecycle/lift',
      handle: async (b) => {
        onlyFields(b, ['spiffeId', 'serial']);
        const target = revocationTargetOf(b);
        const now = deps.clock();
        await deps.revocations.update((l) => liftRevocation(pruneRevocations(l, now), target));
        auditLifecycle(deps.caDir, 'revocation.lifted', now, { value: target.spiffeId ?? target.serial ?? null });
        deps.revocationsChanged();
        return { lifted: target.spiffeId ?? target.serial };
      },
    },
    {
      method: 'POST',
      path: '/lifecycle/rotate-root/prepare',
      handle: async (b) => {
        onlyFields(b, []);
        const p = await runStep(() => prepareRootRotation(deps.caDir, { lockWaitMs: LOCK_WAIT_MS }));
        return { trustDomain: p.trustDomain, csrPem: p.csrPem, rootProof: rootAuth === 'root-key' ? 'required' : 'optional' };
      },
    },
    {
      method: 'POST',
      path: '/lifecycle/rotate-root',
      handle: async (b, ctx) => {
        onlyFields(b, ['newRootPem', 'intermediatePem', 'proof', 'reloadGraceSeconds']);
        const newRootPem = optional(b, 'newRootPem');
        const intermediatePem = optional(b, 'intermediatePem');
        const proof = optional(b, 'proof');
        const grace = optionalNumber(b, 'reloadGraceSeconds');
        if (grace !== undefined && (grace < 0 || grace > 86_400)) throw new AdminError(AdminErrorCode.BAD_BODY, 'reloadGraceSeconds must be between 0 and 86400', { field: 'reloadGraceSeconds' });
        if ((newRootPem === undefined) !== (intermediatePem === undefined)) throw new AdminError(AdminErrorCode.BAD_BODY, 'give both newRootPem and intermediatePem to start a rotation, or neither to advance one', { field: newRootPem === undefined ? 'newRootPem' : 'intermediatePem' });
        const state = loadRootRotationState(deps.caDir);
        let started = false;
        if (newRootPem !== undefined && intermediatePem !== undefined) {
          if (state && state.phase !== 'done') throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, `a root rotation started at ${state.startedAt} is in phase ${state.phase}; advance it with an empty body`, { phase: state.phase });
          const material: RootRotationMaterial = { newRootPem, intermediatePem };
          const now = deps.clock();
          let provedBy: string | null = null;
          if (proof !== undefined || rootAuth === 'root-key') {
            if (proof === undefined) throw new LifecycleError(LifecycleErrorCode.BAD_ROOT_PROOF, 'this control plane starts a root rotation only with material signed by a current root key (trellis ca rotate-root --current-root-dir DIR), or with --root-rotation-auth admin-identity', { reason: 'missing' });
            const roots = readBundleRoots(deps.caDir).map((pem, i) => readCaCertificate(pemCertificates(pem, `root ${i + 1}`)[0]!, `root ${i + 1}`));
            const trustDomain = readCurrentIntermediate(deps.caDir).trustDomain;
            provedBy = (await verifyRootRotationProof(proof, material, { roots, trustDomain, now })).facts.subjectText;
          }
          await runStep(() => startRootRotation(deps.caDir, { material, now, reloadGraceSeconds: grace, lockWaitMs: LOCK_WAIT_MS }));
          auditLifecycle(deps.caDir, 'root-rotation.authorized', now, { by: ctx.identity, proof: provedBy ?? 'admin identity only' });
          started = true;
        } else if (!state || state.phase === 'done') {
          throw new AdminError(AdminErrorCode.BAD_BODY, 'no root rotation is running: start one with newRootPem and intermediatePem (trellis ca rotate-root --admin ADDR --root-dir NEW_ROOT_DIR)', { field: 'newRootPem' });
        }
        const step = await runStep(() => stepRootRotation(deps.caDir, deps.proxies(), deps.clock(), { lockWaitMs: LOCK_WAIT_MS }));
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
        onlyFields(b, ['all', 'spiffeId', 'windowSeconds']);
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

/** Names that would carry a filesystem path: refused with their own message, since the admin API never takes one. */
const PATH_FIELDS = /dir$|path$|file$/i;

/** Refuses (BAD_BODY) any field the route does not take, naming it. */
function onlyFields(b: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(b)) {
    if (allowed.includes(field)) continue;
    if (PATH_FIELDS.test(field)) throw new AdminError(AdminErrorCode.BAD_BODY, `${field}: the admin API takes no filesystem paths; the CLI reads local directories itself and sends certificates`, { field });
    throw new AdminError(AdminErrorCode.BAD_BODY, `unknown field ${field}${allowed.length ? ` (this step takes ${allowed.join(', ')})` : ' (this step takes none)'}`, { field });
  }
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
