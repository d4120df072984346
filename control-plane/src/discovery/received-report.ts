/**
 * The sidecar reports a discovery stream takes: each decoded strictly
 * within its bounds (a malformed or oversized one ends the stream with
 * TRELLIS_CP_BAD_REPORT, as any protocol violation does), then kept whole
 * as the stream's last report. A report is its stream's authenticated
 * identity's: nothing in it names its source.
 *
 * A stream is held to one report per MIN_REPORT_INTERVAL_MS. One that comes
 * sooner is held, not lost, and taken when the interval is over; a newer one
 * replaces a held one (counted as dropped). Holding matters: a sidecar sends
 * only reports that changed, so one that sent two in quick succession (a
 * stream that took over re-sends the last, and the report of the new
 * certificate follows) may send nothing more for minutes, and dropping the
 * second would leave the control plane a stale report all that time.
 */
import { decodeSidecarReport, type SidecarReport, type TrellisError } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { ControlPlaneMetrics } from '../observability/control-plane-metrics';

/** The last sidecar report of a stream, as the control plane took it. */
export interface ReceivedReport {
  /** When it was taken (our clock). */
  readonly receivedAt: Date;
  readonly report: SidecarReport;
}

/** The shortest time between two reports a stream is held to; a sooner one waits for the rest of it. */
export const MIN_REPORT_INTERVAL_MS = 200;

/** How long a report arriving at `nowMs` waits before it is taken: 0 when it may be taken now. */
export function reportWaitMs(last: ReceivedReport | null, nowMs: number): number {
  if (!last) return 0;
  return Math.max(0, MIN_REPORT_INTERVAL_MS - (nowMs - last.receivedAt.getTime()));
}

/**
 * Decodes `body` as the stream's report taken at `nowMs`; counted either
 * way. Throws TRELLIS_CP_BAD_REPORT for one that does not decode.
 */
export function takeReport(body: Buffer, nowMs: number, metrics: Pick<ControlPlaneMetrics, 'reports'>): ReceivedReport {
  let report: SidecarReport;
  try {
    report = decodeSidecarReport(body);
  } catch (err) {
    metrics.reports.inc({ result: 'refused' });
    throw new ControlPlaneError(ControlPlaneErrorCode.BAD_REPORT, (err as Error).message, { field: (err as TrellisError).details?.['field'] ?? '' });
  }
  metrics.reports.inc({ result: 'accepted' });
  return Object.freeze({ receivedAt: new Date(nowMs), report });
}
