/**
 * The client side of the admin API, for the CLI's `--admin ADDR` forms: one
 * JSON request to the control plane's admin endpoint. A refusal comes back
 * as AdminError REFUSED carrying the server's code (`details.serverCode`),
 * so the CLI prints the same one line and code the server decided on.
 */
import { request } from 'node:http';
import { AdminError, AdminErrorCode } from './admin-error';

/** Sends `method path` with `body` as JSON to `addr` (host:port); resolves with the parsed 2xx answer. */
export function adminRequest<T>(addr: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(addr) ?? /^([^:/]+):(\d+)$/.exec(addr.replace(/^http:\/\//, '').replace(/\/$/, ''));
  if (!m) return Promise.reject(new AdminError(AdminErrorCode.UNREACHABLE, `admin address "${addr}" is not host:port`, { addr }));
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise<T>((resolve, reject) => {
    const req = request(
      { host: m[1], port: Number(m[2]), path, method, timeout: timeoutMs, agent: false, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new AdminError(AdminErrorCode.UNREACHABLE, `${addr}${path}: ${err.message}`, { addr }, { cause: err })));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new AdminError(AdminErrorCode.UNREACHABLE, `${addr}${path} answered HTTP ${status} without JSON; is this a Trellis control plane's admin endpoint?`, { addr, status }));
          }
          if (status >= 200 && status < 300) return resolve(parsed as T);
          const e = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } }).error;
          const serverCode = typeof e?.code === 'string' ? e.code : null;
          const message = typeof e?.message === 'string' ? e.message : `HTTP ${status}`;
          reject(new AdminError(AdminErrorCode.REFUSED, `${message}${serverCode ? ` [${serverCode}]` : ''}`, { addr, status, serverCode, serverDetails: e?.details ?? null }));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new AdminError(AdminErrorCode.UNREACHABLE, `cannot reach the admin endpoint ${addr}: ${err.message}`, { addr }, { cause: err })));
    req.end(payload);
  });
}
