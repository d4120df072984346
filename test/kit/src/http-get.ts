/** A plain HTTP GET for tests: a fresh connection unless an agent is given. */
import { request, type Agent } from 'node:http';

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
