/**
 * A steady request stream for fault runs: `concurrency` keep-alive clients,
 * each sending one GET every `intervalMs` (or as soon as the last one is
 * answered, if that is later), so the number of requests that fail during
 * an outage is proportional to its length rather than to how fast a client
 * can spin on refused connections. Every outcome is kept with its time.
 */
import { Agent, request } from 'node:http';

/** One request's outcome. */
export interface Outcome {
  /** When it completed (epoch ms). */
  readonly at: number;
  readonly ok: boolean;
  /** Why it failed: the status, or the error code. */
  readonly why?: string;
  /** The answering app's body (its name), when it succeeded. */
  readonly body?: string;
}

/** Counts over a time window. */
export interface WindowCount {
  sent: number;
  failed: number;
}

/** The load generator. */
export class SteadyLoad {
  readonly outcomes: Outcome[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly agent: Agent;

  constructor(
    private readonly port: number,
    private readonly opts: { concurrency?: number; intervalMs?: number; timeoutMs?: number; path?: string } = {},
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 4 });
  }

  /** Starts the clients. */
  start(): this {
    this.running = true;
    this.loops = Array.from({ length: this.opts.concurrency ?? 4 }, () => this.loop());
    return this;
  }

  /** Stops them and waits for the requests in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.agent.destroy();
  }

  /** Requests completed, and those failed, between `from` and `to` (epoch ms). */
  count(from = 0, to = Infinity): WindowCount {
    let sent = 0;
    let failed = 0;
    for (const o of this.outcomes) {
      if (o.at < from || o.at > to) continue;
      sent++;
      if (!o.ok) failed++;
    }
    return { sent, failed };
  }

  /** The first time at or after `from` that begins `run` successes in a row, or null. */
  recoveredAt(from: number, run = 20): number | null {
    let streak = 0;
    let start: number | null = null;
    for (const o of this.outcomes) {
      if (o.at < from) continue;
      if (!o.ok) {
        streak = 0;
        start = null;
        continue;
      }
      if (streak === 0) start = o.at;
      if (++streak >= run) return start;
    }
    return null;
  }

  /** The last failure at or after `from`, or null. */
  lastFailureAt(from: number): number | null {
    let last: number | null = null;
    for (const o of this.outcomes) if (o.at >= from && !o.ok) last = o.at;
    return last;
  }

  /** Failure reasons in a window, with counts. */
  reasons(from = 0, to = Infinity): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of this.outcomes) if (!o.ok && o.at >= from && o.at <= to) out[o.why ?? '?'] = (out[o.why ?? '?'] ?? 0) + 1;
    return out;
  }

  private async loop(): Promise<void> {
    const interval = this.opts.intervalMs ?? 20;
    while (this.running) {
      const started = Date.now();
      this.outcomes.push(await this.one());
      const wait = started + interval - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  private one(): Promise<Outcome> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (o: Omit<Outcome, 'at'>): void => {
        if (settled) return;
        settled = true;
        resolve({ at: Date.now(), ...o });
      };
      const req = request({ host: '127.0.0.1', port: this.port, path: this.opts.path ?? '/', agent: this.agent, timeout: this.opts.timeoutMs ?? 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => done(res.statusCode === 200 ? { ok: true, body } : { ok: false, why: `HTTP ${res.statusCode}` }));
        res.on('error', (e: Error & { code?: string }) => done({ ok: false, why: e.code ?? e.message }));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (e: Error & { code?: string }) => done({ ok: false, why: e.code ?? e.message }));
      req.end();
    });
  }
}
