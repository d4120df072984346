/**
 * The ACK/NACK state machine for one stream and one type URL, as in xDS.
 *
 * The server records what it sent (version + nonce), what the sidecar
 * accepted, and the last rejection. It decides whether a freshly computed
 * version must be sent: never the version already in flight or accepted, and
 * never a version the sidecar rejected (only a change in config produces a new
 * version, which is sent). Pure: the time is passed in.
 */

/** Per-type sync state shown by /debug/proxies and `trellis proxy-status`. */
export type SyncState = 'NOT_SENT' | 'STALE' | 'SYNCED' | 'NACKED';

/** What an incoming request means for this type. */
export type RequestVerdict =
  | { kind: 'subscribe'; claimedVersion: string }
  | { kind: 'ack'; version: string; latencyMs: number }
  | { kind: 'nack'; rejectedVersion: string; detail: string }
  /** Echoes a nonce sent earlier on this stream but superseded: ignored, as in xDS. */
  | { kind: 'stale' }
  /** Echoes a nonce this stream never sent for this type: a protocol violation. */
  | { kind: 'unknown-nonce' };

/** A JSON-friendly view of one type's state. */
export interface TypeSyncSnapshot {
  state: SyncState;
  sentVersion: string | null;
  sentNonce: string | null;
  ackedVersion: string | null;
  rejectedVersion: string | null;
  lastError: string | null;
  /** ISO-8601 time of the last send, or null. */
  sentAt: string | null;
}

/** One type's ACK/NACK bookkeeping on one stream. */
export class AckTracker {
  private sentVersion: string | null = null;
  private sentNonce: string | null = null;
  private sentAtMs: number | null = null;
  private ackedVersion: string | null = null;
  private rejectedVersion: string | null = null;
  private lastError: string | null = null;
  private readonly issued = new Set<string>();

  /** Records a response sent with `version` under `nonce` at `nowMs`. */
  recordSent(version: string, nonce: string, nowMs: number): void {
    this.sentVersion = version;
    this.sentNonce = nonce;
    this.sentAtMs = nowMs;
    this.issued.add(nonce);
    // Bounded: a nonce older than the last few is treated as stale anyway.
    if (this.issued.size > 64) this.issued.delete(this.issued.values().next().value as string);
  }

  /**
   * Interprets a request for this type. `knownNonce` says whether the stream
   * ever issued `responseNonce` (for any type), so a nonce from another type
   * or from nowhere is told apart from a merely superseded one.
   */
  onRequest(req: { versionInfo: string; responseNonce: string; errorDetail?: string | null }, nowMs: number, knownNonce: boolean): RequestVerdict {
    if (req.responseNonce === '') {
      // A (re)subscription. A reconnecting sidecar tells us what it holds, so
      // an unchanged config is not sent again.
      if (req.versionInfo !== '' && this.ackedVersion === null) this.ackedVersion = req.versionInfo;
      return { kind: 'subscribe', claimedVersion: req.versionInfo };
    }
    if (!this.issued.has(req.responseNonce)) {
      return knownNonce ? { kind: 'stale' } : { kind: 'unknown-nonce' };
    }
    if (req.responseNonce !== this.sentNonce) return { kind: 'stale' };
    if (req.errorDetail) {
      this.rejectedVersion = this.sentVersion;
      this.lastError = req.errorDetail;
      return { kind: 'nack', rejectedVersion: this.sentVersion ?? '', detail: req.errorDetail };
    }
    this.ackedVersion = this.sentVersion;
    this.rejectedVersion = null;
    this.lastError = null;
    return { kind: 'ack', version: this.sentVersion ?? '', latencyMs: this.sentAtMs === null ? 0 : Math.max(0, nowMs - this.sentAtMs) };
  }

  /** True when `version` should be pushed: it is neither in flight, accepted, nor rejected. */
  shouldSend(version: string): boolean {
    if (version === this.rejectedVersion) return false;
    if (this.sentVersion === null) return version !== this.ackedVersion;
    return version !== this.sentVersion;
  }

  /** The last accepted version, or null. */
  get accepted(): string | null {
    return this.ackedVersion;
  }

  /** The state for operators. */
  snapshot(): TypeSyncSnapshot {
    let state: SyncState;
    if (this.rejectedVersion !== null && this.rejectedVersion === this.sentVersion) state = 'NACKED';
    else if (this.sentVersion === null) state = this.ackedVersion === null ? 'NOT_SENT' : 'SYNCED';
    else state = this.sentVersion === this.ackedVersion ? 'SYNCED' : 'STALE';
    return {
      state,
      sentVersion: this.sentVersion,
      sentNonce: this.sentNonce,
      ackedVersion: this.ackedVersion,
      rejectedVersion: this.rejectedVersion,
      lastError: this.lastError,
      sentAt: this.sentAtMs === null ? null : new Date(this.sentAtMs).toISOString(),
    };
  }
}
