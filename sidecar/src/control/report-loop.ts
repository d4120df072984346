/**
 * Sends the sidecar report on the discovery stream: every `intervalMs` it
 * builds the report and sends it when it differs from the last one this
 * stream carried (a new stream gets the current one at the next tick). A
 * report holds window totals, so one that is not sent (no stream, a control
 * plane that takes none) loses nothing: the next carries the same counts.
 */
import { encodeSidecarReport, type SidecarReport } from '@trellis/shared';

/** Where reports go (the discovery client). */
export interface ReportSink {
  /** Sends on the open stream; false when there is none or it takes no reports. */
  sendReport(body: Buffer): boolean;
  onConnectionChange(listener: (connected: boolean) => void): unknown;
}

/** Default time between report builds; a change reaches the control plane within it. */
export const DEFAULT_REPORT_INTERVAL_MS = 500;

/** The timer that keeps the control plane's copy of our report current. */
export class ReportLoop {
  private timer: NodeJS.Timeout | undefined;
  private lastSent: string | null = null;

  constructor(private readonly deps: { sink: ReportSink; build(): SidecarReport; intervalMs?: number }) {
    // A new stream has no report yet: the next tick sends the current one.
    deps.sink.onConnectionChange(() => {
      this.lastSent = null;
    });
  }

  /** Starts the timer (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.deps.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Builds the report and sends it if it changed; returns whether it was sent. */
  tick(): boolean {
    const body = encodeSidecarReport(this.deps.build());
    const text = body.toString('utf8');
    if (text === this.lastSent) return false;
    if (!this.deps.sink.sendReport(body)) return false;
    this.lastSent = text;
    return true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
