/**
 * The admin API's live views for the dashboard: `GET /debug/mesh` (the whole
 * mesh in one answer, mesh-view.ts) and `GET /debug/events?since=N&wait=MS`
 * (the audit events after sequence number N, waiting up to MS, at most 25 s,
 * for one to arrive when there is none yet: a long poll). Admin identities
 * only, like every /debug path.
 */
import type { AuditFeed, AuditEventPage } from '../observability/audit-feed';
import { AdminError, AdminErrorCode } from './admin-error';
import type { AdminRoute } from './lifecycle-routes';
import type { MeshView } from './mesh-view';

/** The longest a `/debug/events` request waits for an event. */
export const MAX_EVENTS_WAIT_MS = 25_000;
/** The most events one answer carries. */
export const MAX_EVENTS_PER_PAGE = 500;

/** What the routes read. */
export interface ObservabilityRouteDeps {
  feed: AuditFeed;
  mesh(): MeshView;
}

/** The two routes over `deps`. */
export function observabilityRoutes(deps: ObservabilityRouteDeps): AdminRoute[] {
  return [
    { method: 'GET', path: '/debug/mesh', handle: () => deps.mesh() },
    {
      method: 'GET',
      path: '/debug/events',
      handle: (_body, ctx) => {
        const q = ctx.query ?? new URLSearchParams();
        const since = intParam(q, 'since', 0, Number.MAX_SAFE_INTEGER, 0);
        const limit = intParam(q, 'limit', 1, MAX_EVENTS_PER_PAGE, 200);
        const wait = intParam(q, 'wait', 0, MAX_EVENTS_WAIT_MS, 0);
        return waitForEvents(deps.feed, since, limit, wait);
      },
    },
  ];
}

/** The page after `since`, waiting up to `waitMs` for a first event when there is none yet. */
export function waitForEvents(feed: AuditFeed, since: number, limit: number, waitMs: number): Promise<AuditEventPage> {
  const page = feed.since(since, limit);
  if (page.events.length > 0 || waitMs === 0) return Promise.resolve(page);
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      unsubscribe();
      resolve(feed.since(since, limit));
    };
    const timer = setTimeout(done, waitMs);
    const unsubscribe = feed.onAppend(done);
  });
}

function intParam(q: URLSearchParams, name: string, min: number, max: number, dflt: number): number {
  const v = q.get(name);
  if (v === null || v === '') return dflt;
  if (!/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) throw new AdminError(AdminErrorCode.BAD_BODY, `${name} must be an integer from ${min} to ${max}`, { field: name });
  return Number(v);
}
