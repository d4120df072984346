/**
 * The dashboard's link to the control plane: polls `GET /debug/mesh` (every
 * 400 ms by default, so a change shows within a second) and long-polls
 * `GET /debug/events`, both with the operator's admin credentials over
 * mTLS (the browser never holds them), and tells subscribers what changed.
 * It keeps the last answer and the last events only to greet a new page;
 * what the page shows is always the control plane's own view.
 */
import { adminRequest, type AdminTarget, type AuditEvent, type AuditEventPage, type MeshView } from '@trellis/control-plane';
import type { Logger } from '@trellis/shared';
import { changedSections, type ControlPlaneLink, type ServerMessage } from './dashboard-messages';

/** Events kept to greet a new page. */
const RECENT_EVENTS = 200;
/** How long one events request waits for an event on the control plane. */
const EVENTS_WAIT_MS = 20_000;

/** Collaborators. */
export interface MeshFeedDeps {
  admin: AdminTarget;
  logger: Logger;
  /** Between two mesh polls. Default 400 ms. */
  intervalMs?: number;
  /** The admin client (tests may wrap it). */
  request?: typeof adminRequest;
}

/** Polls the control plane and fans its changes out. */
export class MeshFeed {
  private mesh: MeshView | null = null;
  private recent: AuditEvent[] = [];
  private since = 0;
  private link: ControlPlaneLink;
  private readonly listeners = new Set<(m: ServerMessage) => void>();
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  /** Abandons the requests in flight on stop(): a long poll must not hold the process for its 20 s. */
  private inFlight = new AbortController();
  private readonly request: typeof adminRequest;

  constructor(private readonly deps: MeshFeedDeps) {
    this.request = deps.request ?? adminRequest;
    this.link = { connected: false, admin: deps.admin.address, error: 'not polled yet' };
  }

  /** The greeting for a new page. */
  hello(): ServerMessage {
    return { type: 'hello', mesh: this.mesh, events: [...this.recent], link: this.link };
  }

  /** Calls `listener` with every message; returns an unsubscribe function. */
  subscribe(listener: (m: ServerMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.inFlight = new AbortController();
    void this.pollMesh();
    void this.pollEvents();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.inFlight.abort();
  }

  private emit(m: ServerMessage): void {
    for (const l of this.listeners) l(m);
  }

  private setLink(connected: boolean, error: string | null): void {
    if (this.link.connected === connected && this.link.error === error) return;
    if (!connected) this.deps.logger.warn('dashboard cannot read the control plane; retrying', { admin: this.deps.admin.address, error });
    else this.deps.logger.info('dashboard reads the control plane', { admin: this.deps.admin.address });
    this.link = { connected, admin: this.deps.admin.address, error };
    this.emit({ type: 'link', link: this.link });
  }

  private async pollMesh(): Promise<void> {
    if (this.stopped) return;
    try {
      const next = await this.request<MeshView>(this.deps.admin, 'GET', '/debug/mesh', undefined, 5000, this.inFlight.signal);
      if (this.stopped) return;
      this.setLink(true, null);
      const sections = changedSections(this.mesh, next);
      this.mesh = next;
      if (sections) this.emit({ type: 'mesh', generatedAt: next.generatedAt, sections });
    } catch (err) {
      if (this.stopped) return;
      this.setLink(false, (err as Error).message);
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.pollMesh(), this.deps.intervalMs ?? 400);
      this.timer.unref();
    }
  }

  private async pollEvents(): Promise<void> {
    while (!this.stopped) {
      try {
        const page = await this.request<AuditEventPage>(this.deps.admin, 'GET', `/debug/events?since=${this.since}&wait=${EVENTS_WAIT_MS}&limit=200`, undefined, EVENTS_WAIT_MS + 10_000, this.inFlight.signal);
        if (this.stopped) return;
        // A restarted control plane counts from 1 again: start over from its oldest.
        if (page.next < this.since) {
          this.since = 0;
          continue;
        }
        this.since = page.next;
        if (page.events.length > 0) {
          this.recent = [...this.recent, ...page.events].slice(-RECENT_EVENTS);
          this.emit({ type: 'events', events: page.events });
        }
      } catch {
        // The mesh poll reports the link; wait a moment before asking again.
        await new Promise((r) => setTimeout(r, 1000).unref());
      }
    }
  }
}
