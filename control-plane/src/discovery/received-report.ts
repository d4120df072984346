/**
 * The sidecar reports a discovery stream takes: each decoded strictly
 * within its bounds (a malformed or oversized one ends the stream with
 * TRELLIS_CP_BAD_REPORT, as any protocol violation does), then kept whole
 * as the stream's last report. A report is its stream's authenticated
 * identity's: nothing in it names its source. One sooner than
 * MIN_REPORT_INTERVAL_MS after the last is dropped and counted.
 */
import { decodeSidecarReport, type SidecarReport, type TrellisError } from '@trellis/shared';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { ControlPlaneMetrics } from '../observability/control-plane-metrics';

/** The last sidecar report of a stream, as the control plane took it. */
export interface ReceivedReport {
  /** When it arrived (our clock). */
  readonly receivedAt: Date;
  readonly report: SidecarReport;
}

/** The shortest time between two reports a stream is held to; a sooner one is dropped (the next carries the same totals). */
export const MIN_REPORT_INTERVAL_MS = 200;

/**
 * The report to keep after `body` arrived at `nowMs`, or null when it is
 * dropped (too soon after `last`); counted either way. Throws
 * TRELLIS_CP_BAD_REPORT for one that does not decode.
 */
export function receiveReport(last: ReceivedReport | null, body: Buffer, nowMs: number, metrics: Pick<ControlPlaneMetrics, 'reports'>): ReceivedReport | null {
  if (last && nowMs - last.receivedAt.getTime() < MIN_REPORT_INTERVAL_MS) {
    metrics.reports.inc({ result: 'dropped' });
    return null;
  }
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
