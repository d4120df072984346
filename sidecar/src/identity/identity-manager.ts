/**
 * Owns the workload's identity: generates a fresh EC P-256 key in memory for
 * every issuance (the key is never written anywhere and never leaves this
 * process), asks for a certificate with a CSR, installs the result in the
 * SidecarState, and renews at the time `nextRotation` picks. Failed renewals
 * retry with jittered backoff while the current certificate keeps serving;
 * if it expires first, the manager logs loudly and the sidecar fails closed
 * (readiness and inbound checks read the expiry from the state).
 *
 * The control plane may also ask for an earlier renewal (a forced re-issue
 * or a root rotation's switch): a Renewal resource with a per-sidecar
 * jittered `renewBy`. The manager renews, with a fresh key as always, at the
 * earlier of that and its own schedule; installing any new certificate
 * answers the request.
 */
import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { buildWorkloadCsr, RENEWAL_TYPE_URL, type Logger, type RenewalResource, type SvidResource } from '@trellis/shared';
import { SidecarError } from '../errors';
import { makeCredentials, type Credentials, type SidecarState } from '../state/sidecar-state';
import { DEFAULT_ROTATION, nextRotation, retryDelay, type RotationPolicy } from './next-rotation';

const generateKeyPairAsync = promisify(generateKeyPair);
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The shortest time between installing an SVID and renewing it, so a misconfiguration cannot renew in a tight loop. */
const MIN_ROTATION_MS = 1000;

/** Collaborators of the IdentityManager. */
export interface IdentityManagerDeps {
  state: SidecarState;
  /** Sends the CSR to the CA (the discovery client's `requestSvid`). */
  issue(csrDer: Buffer): Promise<Pick<SvidResource, 'chainPem'>>;
  logger: Logger;
  clock: () => Date;
  /** Where renewal, retry and expiry timers run (Node's by default; tests pass the test kit's FakeClock). */
  timers?: IdentityTimers;
  random?: () => number;
  /** The SPIFFE ID we expect; put in the CSR's URI SAN when given. */
  spiffeId?: string;
  rotation?: RotationPolicy;
  /**
   * Where renewal requests come from (the discovery client): the manager
   * registers its Renewal handler here when constructed, before the stream starts.
   */
  renewHints?: { on(typeUrl: typeof RENEWAL_TYPE_URL, handler: (resources: ReadonlyArray<{ name: string; body: RenewalResource }>, version: string) => void): unknown };
  /** Called after each attempt (metrics). */
  onRotation?: (result: 'ok' | 'error', creds?: Credentials) => void;
}

/** The timers the manager uses, in the shape of Node's setTimeout/clearTimeout. */
export interface IdentityTimers {
  setTimeout(fn: () => void, ms: number): { unref?(): unknown };
  clearTimeout(handle: unknown): void;
}

const NODE_TIMERS: IdentityTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Keeps a valid SVID in the state. */
export class IdentityManager {
  private timer: ReturnType<IdentityTimers['setTimeout']> | undefined;
  private expiryTimer: ReturnType<IdentityTimers['setTimeout']> | undefined;
  private readonly timers: IdentityTimers;
  private stopped = false;
  private attempt = 0;
  private inFlight: Promise<Credentials> | undefined;
  /** Our own next renewal (epoch ms), and the control plane's earlier deadline if it asked for one. */
  private ownAtMs: number | null = null;
  private requestedAtMs: number | null = null;

  constructor(private readonly deps: IdentityManagerDeps) {
    this.timers = deps.timers ?? NODE_TIMERS;
    deps.renewHints?.on(RENEWAL_TYPE_URL, (resources) => {
      if (resources.length !== 1) throw new SidecarError('TRELLIS_SIDECAR_ISSUE_FAILED', `expected exactly one renewal resource, got ${resources.length}`, {});
      this.renewalRequested(resources[0]!.body);
    });
  }

  /**
   * Applies a renewal request: renew by `renewBy` when that is earlier than
   * our own schedule; a request with no deadline withdraws an earlier one.
   */
  renewalRequested(r: RenewalResource): void {
    if (this.stopped) return;
    const at = r.renewBy === null ? null : Date.parse(r.renewBy);
    if (at === this.requestedAtMs) return;
    this.requestedAtMs = at;
    if (at !== null) this.deps.logger.info('control plane asks for a renewal with a fresh key', { reason: r.reason, orderedAt: r.orderedAt, renewBy: r.renewBy });
    this.arm();
  }

  /** Obtains the first SVID (retrying until it succeeds or `stop()`), then schedules renewals. */
  async start(): Promise<Credentials> {
    for (;;) {
      try {
        return await this.rotateNow();
      } catch (err) {
        if (this.stopped) throw err;
        const delay = retryDelay(this.attempt++, this.random());
        this.deps.logger.warn('first SVID issuance failed; retrying', { error: err, retryInMs: delay });
        await new Promise<void>((r) => this.timers.setTimeout(r, delay).unref?.());
      }
    }
  }

  /** Generates a fresh key, gets it certified, installs it. Concurrent calls share one attempt. */
  rotateNow(): Promise<Credentials> {
    if (!this.inFlight) {
      this.inFlight = this.doRotate().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }

  /** When the next renewal is due: the earlier of our own schedule and the control plane's request; null when none is set. */
  nextRenewalAt(): Date | null {
    if (this.stopped || (this.ownAtMs === null && this.requestedAtMs === null)) return null;
    return new Date(Math.min(this.ownAtMs ?? Infinity, this.requestedAtMs ?? Infinity));
  }

  /** Cancels timers; the current credentials stay in the state. */
  stop(): void {
    this.stopped = true;
    if (this.timer) this.timers.clearTimeout(this.timer);
    if (this.expiryTimer) this.timers.clearTimeout(this.expiryTimer);
  }

  private random(): number {
    return (this.deps.random ?? Math.random)();
  }

  private async doRotate(): Promise<Credentials> {
    const { logger } = this.deps;
    let creds: Credentials;
    try {
      const { privateKey, publicKey } = (await generateKeyPairAsync('ec', { namedCurve: 'P-256' })) as { privateKey: KeyObject; publicKey: KeyObject };
      const csr = buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }), this.deps.spiffeId);
      const issued = await this.deps.issue(csr);
      creds = makeCredentials(privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, issued.chainPem);
      if (this.deps.spiffeId !== undefined && creds.spiffeId !== this.deps.spiffeId) {
        throw new SidecarError('TRELLIS_SIDECAR_ISSUE_FAILED', `the CA issued ${creds.spiffeId}, expected ${this.deps.spiffeId}`, { spiffeId: creds.spiffeId });
      }
      this.deps.state.update({ credentials: creds });
    } catch (err) {
      if (this.stopped) throw err;
      this.deps.onRotation?.('error');
      logger.warn('SVID renewal failed; keeping the current certificate', { error: err, attempt: this.attempt });
      // The retry backoff governs now: a past renewal deadline must not turn into a tight loop.
      this.requestedAtMs = null;
      this.scheduleRetry();
      throw err;
    }
    this.attempt = 0;
    this.deps.onRotation?.('ok', creds);
    logger.info('SVID installed', { spiffeId: creds.spiffeId, serial: creds.serialHex, notAfter: creds.notAfter.toISOString() });
    this.schedule(creds);
    return creds;
  }

  private schedule(creds: Credentials): void {
    if (this.stopped) return;
    const now = this.deps.clock();
    // The lifetime counts from when the certificate could first be used here:
    // CAs back-date notBefore for clock skew (ours by 60 s), which would
    // otherwise put the renewal of a short-lived SVID in the past and renew in
    // a loop. And never renew sooner than MIN_ROTATION_MS after installing.
    const start = new Date(Math.max(creds.notBefore.getTime(), now.getTime()));
    const at = nextRotation(now, start, creds.notAfter, this.deps.rotation ?? DEFAULT_ROTATION, this.random());
    const delay = Math.max(at.getTime() - now.getTime(), Math.min(MIN_ROTATION_MS, creds.notAfter.getTime() - now.getTime()));
    // A new certificate (fresh key) answers any renewal the control plane asked for.
    this.ownAtMs = now.getTime() + delay;
    this.requestedAtMs = null;
    this.arm();
    if (this.expiryTimer) this.timers.clearTimeout(this.expiryTimer);
    this.expiryTimer = this.timers.setTimeout(() => this.checkExpiry(creds), Math.min(MAX_TIMER_MS, Math.max(0, creds.notAfter.getTime() - now.getTime()) + 1));
    this.expiryTimer.unref?.();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.ownAtMs = this.deps.clock().getTime() + retryDelay(this.attempt++, this.random());
    this.arm();
  }

  /** Sets the timer to the earlier of our own schedule and the control plane's request. */
  private arm(): void {
    if (this.stopped) return;
    if (this.ownAtMs === null && this.requestedAtMs === null) return;
    const at = Math.min(this.ownAtMs ?? Infinity, this.requestedAtMs ?? Infinity);
    this.setTimer(at - this.deps.clock().getTime());
  }

  private setTimer(ms: number): void {
    if (this.timer) this.timers.clearTimeout(this.timer);
    this.timer = this.timers.setTimeout(() => {
      this.rotateNow().catch(() => undefined);
    }, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
    this.timer.unref?.();
  }

  private checkExpiry(creds: Credentials): void {
    const current = this.deps.state.current().credentials;
    if (current === creds && this.deps.clock().getTime() >= creds.notAfter.getTime()) {
      this.deps.logger.error('SVID EXPIRED before renewal succeeded: refusing inbound mTLS and reporting not ready until a new certificate arrives', {
        spiffeId: creds.spiffeId,
        serial: creds.serialHex,
        notAfter: creds.notAfter.toISOString(),
      });
    }
  }
}
