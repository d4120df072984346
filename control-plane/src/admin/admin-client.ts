/**
 * The client side of the admin API, the one every CLI command that talks to
 * a control plane's `--admin ADDR` uses: one JSON request over mutual TLS.
 * It presents the admin credentials (admin-credentials.ts) and accepts the
 * server only when its certificate chains to the credentials' bundle and
 * carries the control plane's SPIFFE ID (a hostname means nothing here, as
 * for the sidecars). A refusal comes back as AdminError REFUSED carrying the
 * server's code (`details.serverCode`), so the CLI prints the same one line
 * and code the server decided on.
 */
import { request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { controlPlaneSpiffeId, Oid, parseHostPort, uriSansOfPeerCertificate, verifyPeerCertificateSvid } from '@trellis/shared';
import type { AdminCredentials } from './admin-credentials';
import { AdminError, AdminErrorCode } from './admin-error';

/** Where to send admin requests, and as whom. */
export interface AdminTarget {
  /** host:port (IPv6 as [::1]:port). */
  readonly address: string;
  readonly credentials: AdminCredentials;
  /** Roots to trust for the server besides the credentials' bundle (a rotation's new root, once the CA switches to it). */
  readonly extraRootsPem?: readonly string[];
  /** The SPIFFE ID the server must present; default the control plane's ID in the credentials' trust domain. */
  readonly serverSpiffeId?: string;
}

const TLS_TRUST_ERRORS = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_SIGNATURE_FAILURE']);

/** Sends `method path` with `body` as JSON to the target; resolves with the parsed 2xx answer. `signal` abandons it (UNREACHABLE). */
export function adminRequest<T>(target: AdminTarget, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 30_000, signal?: AbortSignal): Promise<T> {
  const addr = target.address;
  const hp = parseHostPort(addr.replace(/^https?:\/\//, '').replace(/\/$/, ''));
  if (typeof hp === 'string') return Promise.reject(new AdminError(AdminErrorCode.UNREACHABLE, `admin address "${addr}" is not host:port`, { addr }));
  const creds = target.credentials;
  const expected = target.serverSpiffeId ?? controlPlaneSpiffeId(creds.trustDomain);
  const payload = method === 'POST' ? Buffer.from(JSON.stringify(body ?? {})) : undefined;
  return new Promise<T>((resolve, reject) => {
    const req = request(
      {
        host: hp.host,
        port: hp.port,
        path,
        method,
        timeout: timeoutMs,
        agent: false,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        cert: creds.chainPem,
        key: creds.keyPem,
        ca: [creds.bundlePem, ...(target.extraRootsPem ?? [])],
        minVersion: 'TLSv1.2',
        // Replaces hostname checks: the control plane is known by its SPIFFE ID alone, on an
        // X.509-SVID the shared verifier accepts (the one workloads and the CA use).
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const uris = uriSansOfPeerCertificate(cert);
          if (uris.length !== 1 || uris[0] !== expected) {
            return new AdminError(AdminErrorCode.UNREACHABLE, `${addr} presented ${uris.join(', ') || 'no SPIFFE ID'}, not the control plane ${expected}`, { addr });
          }
          const svid = verifyPeerCertificateSvid(cert, creds.trustDomain, [creds.bundlePem, ...(target.extraRootsPem ?? [])], { now: new Date(), requiredEku: Oid.serverAuth });
          return svid.ok ? undefined : new AdminError(AdminErrorCode.UNREACHABLE, `${addr} presented ${expected} on a certificate that is not a valid X.509-SVID: ${svid.code}: ${svid.reason}`, { addr });
        },
      },
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
    if (signal) {
      const abort = (): void => void req.destroy(new Error('abandoned'));
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
      req.once('close', () => signal.removeEventListener('abort', abort));
    }
    req.on('error', (err) => {
      if (err instanceof AdminError) return reject(err);
      const code = (err as NodeJS.ErrnoException).code ?? '';
      const hint = TLS_TRUST_ERRORS.has(code) ? ` (the server certificate does not chain to ${creds.dir}/bundle.pem: after a root rotation, write fresh credentials with "trellis admin credentials")` : '';
      reject(new AdminError(AdminErrorCode.UNREACHABLE, `cannot reach the admin endpoint ${addr}: ${err.message}${hint}`, { addr, tlsCode: code || null }, { cause: err }));
    });
    req.end(payload);
  });
}
