/**
 * One HTTP GET every `intervalMs` (the next only once the last is answered)
 * through a sidecar's outbound port, every outcome kept with its time: the
 * traffic the state scenarios measure while a fault is on.
 */
import { Agent, request } from 'node:http';

/** One request's outcome. */
export interface RequestOutcome {
  readonly at: number;
  readonly ok: boolean;
  /** Why it failed: the HTTP status, or the error's code. */
  readonly why?: string;
}

/** A stream of requests to `127.0.0.1:port`. */
export class RequestStream {
  readonly outcomes: RequestOutcome[] = [];
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });

  constructor(private readonly port: number, private readonly intervalMs = 20) {}

  start(): this {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const why = await new Promise<string | null>((resolve) => {
          const req = request({ host: '127.0.0.1', port: this.port, path: '/', agent: this.agent, timeout: 2000 }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`));
          });
          req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
          req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
          req.end();
        });
        this.outcomes.push(why === null ? { at: Date.now(), ok: true } : { at: Date.now(), ok: false, why });
        await new Promise((r) => setTimeout(r, this.intervalMs));
      }
    })();
    return this;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.agent.destroy();
  }

  /** Requests completed from `from` on, and how many failed. */
  count(from = 0): { sent: number; failed: number } {
    const after = this.outcomes.filter((o) => o.at >= from);
    return { sent: after.length, failed: after.filter((o) => !o.ok).length };
  }

  /** Why the requests from `from` on failed, and how many each time. */
  reasons(from = 0): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of this.outcomes) if (o.at >= from && !o.ok) out[o.why ?? '?'] = (out[o.why ?? '?'] ?? 0) + 1;
    return out;
  }

  /** The last failure at or after `from`, or null. */
  lastFailureAt(from = 0): number | null {
    const f = this.outcomes.filter((o) => o.at >= from && !o.ok);
    return f.length === 0 ? null : f[f.length - 1]!.at;
  }
}
