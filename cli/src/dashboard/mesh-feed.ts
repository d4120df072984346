/**
 * The dashboard's link to the control plane: polls `GET /debug/mesh` (every
 * 400 ms by default, so a change shows within a second) and long-polls
 * `GET /debug/events`, both with the operator's admin credentials over
 * mTLS (the browser never holds them), and tells subscribers what changed.
 * It keeps the last answer and the last events only to greet a new page;
 * what the page shows is always the control plane's own view. It polls only
 * while a page is open: a dashboard nobody looks at costs the control plane
 * nothing.
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
  /** Between start() and stop(). */
  private enabled = false;
  /** Polling now (enabled and someone listening); a new generation ends the loops of the previous one. */
  private generation = 0;
  private polling = false;
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

  /** Calls `listener` with every message, polling while there is one; returns an unsubscribe function. */
  subscribe(listener: (m: ServerMessage) => void): () => void {
    this.listeners.add(listener);
    this.resume();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.pause();
    };
  }

  /** Polls from now on whenever a page is open. */
  start(): void {
    this.enabled = true;
    this.resume();
  }

  /** Stops polling and abandons the requests in flight. */
  stop(): void {
    this.enabled = false;
    this.pause();
  }

  private resume(): void {
    if (!this.enabled || this.polling || this.listeners.size === 0) return;
    this.polling = true;
    this.generation++;
    this.inFlight = new AbortController();
    void this.pollMesh(this.generation);
    void this.pollEvents(this.generation);
  }

  private pause(): void {
    if (!this.polling) return;
    this.polling = false;
    this.generation++;
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

  private async pollMesh(gen: number): Promise<void> {
    if (gen !== this.generation) return;
    try {
      const next = await this.request<MeshView>(this.deps.admin, 'GET', '/debug/mesh', undefined, 5000, this.inFlight.signal);
      if (gen !== this.generation) return;
      this.setLink(true, null);
      const sections = changedSections(this.mesh, next);
      this.mesh = next;
      if (sections) this.emit({ type: 'mesh', generatedAt: next.generatedAt, sections });
    } catch (err) {
      if (gen !== this.generation) return;
      this.setLink(false, (err as Error).message);
    }
    if (gen === this.generation) {
      this.timer = setTimeout(() => void this.pollMesh(gen), this.deps.intervalMs ?? 400);
      this.timer.unref();
    }
  }

  private async pollEvents(gen: number): Promise<void> {
    while (gen === this.generation) {
      try {
        const page = await this.request<AuditEventPage>(this.deps.admin, 'GET', `/debug/events?since=${this.since}&wait=${EVENTS_WAIT_MS}&limit=200`, undefined, EVENTS_WAIT_MS + 10_000, this.inFlight.signal);
        if (gen !== this.generation) return;
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
