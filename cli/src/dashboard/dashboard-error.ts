/**
 * The dashboard's error family (`TRELLIS_DASHBOARD_*`), each code listed in
 * docs/errors.md.
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes. */
export const DashboardErrorCode = Object.freeze({
  BAD_LISTEN: 'TRELLIS_DASHBOARD_BAD_LISTEN',
  NOT_LOOPBACK: 'TRELLIS_DASHBOARD_NOT_LOOPBACK',
  LISTEN_FAILED: 'TRELLIS_DASHBOARD_LISTEN_FAILED',
  PAGE_MISSING: 'TRELLIS_DASHBOARD_PAGE_MISSING',
});

/** One of the codes above. */
export type DashboardErrorCodeValue = (typeof DashboardErrorCode)[keyof typeof DashboardErrorCode];

/** A dashboard that cannot start as asked. */
export class DashboardError extends TrellisError<DashboardErrorCodeValue> {}
