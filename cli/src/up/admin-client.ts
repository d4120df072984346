/**
 * Small HTTP helpers `trellis up` uses to watch its sidecars through their
 * loopback admin endpoints (plain HTTP): readiness polling and JSON reads.
 * The control plane's admin API is HTTPS with admin credentials; it is
 * reached through @trellis/control-plane's adminRequest, the one client.
 */
import { request } from 'node:http';
import { parseHostPort } from '@trellis/shared';

export interface HttpReply {
  status: number;
  body: string;
}

/** GET http://ADDR/PATH with a timeout; rejects on connection errors. */
export function httpGet(addr: string, path: string, timeoutMs = 2000): Promise<HttpReply> {
  const hp = parseHostPort(addr);
  if (typeof hp === 'string') return Promise.reject(new Error(`admin address "${addr}": ${hp}`));
  return new Promise((resolve, reject) => {
    const req = request({ host: hp.host, port: hp.port, path, method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${addr}${path} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** GET and parse JSON; undefined when unreachable or not 2xx JSON. */
export async function getJson<T>(addr: string, path: string): Promise<T | undefined> {
  try {
    const r = await httpGet(addr, path);
    if (r.status < 200 || r.status >= 300) return undefined;
    return JSON.parse(r.body) as T;
  } catch {
    return undefined;
  }
}

/** Polls `GET addr+path` until it answers 200, or rejects after `timeoutMs`. */
export function waitReady(addr: string, path: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return pollUntil(`${addr}${path}`, async () => {
    const r = await httpGet(addr, path, 1000);
    return r.status === 200 ? true : `HTTP ${r.status}`;
  }, timeoutMs, signal);
}

/**
 * Calls `probe` every 200 ms until it resolves true, or rejects after
 * `timeoutMs` naming `what` and the last failure (a string `probe` returned,
 * or the error it threw).
 */
export async function pollUntil(what: string, probe: () => Promise<true | string>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new Error('stopped');
    try {
      const r = await probe();
      if (r === true) return;
      last = r;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms (last: ${last})`);
}
