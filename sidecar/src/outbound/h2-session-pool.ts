/**
 * One multiplexed HTTP/2 mTLS connection per upstream endpoint, shared by
 * every request an `/http` outbound listener carries (Envoy's HTTP/2
 * connection pool, and grpc-go's subchannel: one connection per address).
 * The handshake offers ALPN `h2` only and the server is judged as on the
 * byte-forwarding path (server-verdict.ts: a valid, unrevoked SVID of one
 * of the destination's identities); a server that does not choose `h2` is
 * refused (`upstream_not_h2`), since every `/http` inbound port offers it.
 *
 * Each session is a tracked connection of its server's identity, so a
 * revocation destroys it and resets its open streams. New credentials or
 * a new bundle (another TLS context) send GOAWAY to the sessions made with
 * the old ones: their open streams finish, new requests get a new session.
 * A session that closes is forgotten, and the next request dials again.
 */
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type SecureContext, type TLSSocket } from 'node:tls';
import { groupName, parseHostPort } from '@trellis/shared';
import type { SidecarSnapshot } from '../state/sidecar-state';
import { peerCertificates } from '../state/peer-trust';
import { H2_SETTINGS, tuneSession } from '../http/app-h2c';
import { judgeServer, resolveTarget, UNREACHABLE } from './server-verdict';
import type { OutboundDeps, OutboundTarget } from './outbound-listener';

/** Collaborators of a pool: its outbound listener's, less the native data path (HTTP/2 runs on Node). */
export type H2PoolDeps = Omit<OutboundDeps, 'native'>;

/** A session to use, or why there is none (a refusal reason, counted by the caller). */
export type PooledSession = { readonly ok: true; readonly session: ClientHttp2Session } | { readonly ok: false; readonly reason: string; readonly detail: string };

interface Entry {
  readonly epoch: object;
  readonly ready: Promise<PooledSession>;
  session?: ClientHttp2Session;
}

/** The HTTP/2 sessions of one outbound target, one per endpoint address. */
export class H2SessionPool {
  private readonly entries = new Map<string, Entry>();
  private rr = 0;

  constructor(
    private readonly target: OutboundTarget,
    private readonly deps: H2PoolDeps,
  ) {}

  /** A ready session to the next endpoint (round robin), dialing one when there is none. Fails closed. */
  get(): Promise<PooledSession> {
    const snap = this.deps.state.current();
    const epoch = this.deps.clientContext();
    if (!snap.credentials || !snap.bundle || this.deps.clock().getTime() >= snap.credentials.notAfter.getTime()) {
      return Promise.resolve({ ok: false, reason: 'no_valid_svid', detail: 'we hold no valid SVID: failing closed' });
    }
    if (!epoch) return Promise.resolve({ ok: false, reason: 'no_tls_context', detail: 'no TLS context for the current credentials and trust bundle: failing closed' });
    const dest = resolveTarget(this.target, snap, this.rr++);
    if ('error' in dest) return Promise.resolve({ ok: false, reason: 'no_endpoint', detail: dest.error });
    const have = this.entries.get(dest.address);
    if (have && have.epoch === epoch && !(have.session && (have.session.closed || have.session.destroyed))) return have.ready;
    // Credentials or bundle changed: the old session finishes its streams and takes no new ones.
    if (have?.session && have.epoch !== epoch) have.session.close();
    const entry: Entry = { epoch, ready: this.dial(dest.address, dest.spiffeIds, snap, epoch as SecureContext) };
    this.entries.set(dest.address, entry);
    void entry.ready.then((r) => {
      if (!r.ok) {
        if (this.entries.get(dest.address) === entry) this.entries.delete(dest.address);
        return;
      }
      entry.session = r.session;
      r.session.once('close', () => {
        if (this.entries.get(dest.address) === entry) this.entries.delete(dest.address);
      });
    });
    return entry.ready;
  }

  /** GOAWAY to every session: open streams finish, nothing new starts. */
  close(): void {
    for (const e of this.entries.values()) e.session?.close();
    this.entries.clear();
  }

  private dial(address: string, allowed: readonly string[], snap: SidecarSnapshot, ctx: SecureContext): Promise<PooledSession> {
    const { metrics, clock } = this.deps;
    // The shared parser; addresses were checked when the snapshot was taken, so a failure here still fails closed.
    const hp = parseHostPort(address);
    if (typeof hp === 'string') return Promise.resolve({ ok: false, reason: 'no_endpoint', detail: `"${address}": ${hp}` });
    const { host, port } = hp;
    return new Promise((resolve) => {
      const tls: TLSSocket = tlsConnect({ host, port, secureContext: ctx, minVersion: 'TLSv1.2', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      const fail = (reason: string, detail: string): void => {
        clearTimeout(timer);
        metrics.handshakes.inc({ direction: 'outbound', result: 'error', group: 'unknown' });
        tls.destroy();
        resolve({ ok: false, reason, detail });
      };
      const timer = setTimeout(() => fail('connect_timeout', address), this.deps.connectTimeoutMs ?? 10_000);
      tls.once('error', (err: Error & { code?: string }) => fail(UNREACHABLE.has(err.code ?? '') ? 'upstream_unreachable' : 'handshake_failed', err.code ?? err.message));
      tls.once('secureConnect', () => {
        clearTimeout(timer);
        tls.removeAllListeners('error');
        tls.on('error', () => tls.destroy());
        const now = this.deps.state.current();
        const { presented, leafDer } = peerCertificates(tls, now);
        const { verdict } = judgeServer({ leafDer, chainError: tls.authorized ? undefined : String(tls.authorizationError), presented, resumedPeer: undefined, snap: now, trustDomain: snap.credentials!.trustDomain, now: clock(), allowed });
        if (!verdict.ok) return fail(verdict.reason, verdict.detail);
        if (tls.alpnProtocol !== 'h2') return fail('upstream_not_h2', `${address} did not negotiate h2 (ALPN: ${String(tls.alpnProtocol)})`);
        const group = groupName((tls.getEphemeralKeyInfo() as { name?: string } | null)?.name);
        metrics.handshakes.inc({ direction: 'outbound', result: 'ok', group });
        metrics.allow('outbound', verdict.spiffeId);
        const session = h2Connect(`https://${address}`, { createConnection: () => tls, settings: H2_SETTINGS, maxSessionMemory: 64 });
        session.on('error', () => session.destroy());
        tuneSession(session);
        const tracked = this.deps.tracker.add({ direction: 'outbound', spiffeId: verdict.spiffeId, serialHex: verdict.serialHex, group, sockets: [{ destroy: () => session.destroy() }, tls] });
        session.once('close', () => {
          this.deps.tracker.remove(tracked);
          metrics.bytes.inc({ direction: 'outbound', flow: 'rx' }, tls.bytesRead);
          metrics.bytes.inc({ direction: 'outbound', flow: 'tx' }, tls.bytesWritten);
        });
        resolve({ ok: true, session });
      });
    });
  }
}
