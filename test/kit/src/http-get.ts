/** A plain HTTP GET for tests: a fresh connection unless an agent is given. */
import { request, type Agent } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';

export interface HttpGetOptions {
  host?: string;
  agent?: Agent | false;
  timeoutMs?: number;
}

/** GET http://HOST:PORT/PATH and resolve with the status and the body text. */
export function httpGet(port: number, path: string, opts: HttpGetOptions = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: opts.host ?? '127.0.0.1', port, path, agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** One GET on an open HTTP/2 `session`: the status and body once the stream ends; rejects if it ends otherwise (a reset). */
export function h2Get(session: ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = session.request({ ':path': path });
    let status = 0;
    let body = '';
    r.on('response', (h) => (status = Number(h[':status'])));
    r.setEncoding('utf8').on('data', (d: string) => (body += d));
    r.on('end', () => resolve({ status, body }));
    r.on('error', reject);
  });
}
