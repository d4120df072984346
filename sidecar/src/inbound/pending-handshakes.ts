/**
 * The cap on inbound connections accepted but not yet judged: waiting for
 * their first bytes, in the TLS handshake, or awaiting the verdict on the
 * peer (both data paths), and PERMISSIVE connections still being sniffed.
 * One count per sidecar process, shared by every inbound listener, since
 * what it protects is the process's memory.
 *
 * Beyond the cap a new connection is closed at once, before any TLS work,
 * and counted (`trellis_refusals_total{reason="handshake_limit"}`): a flood
 * of idle or slow clients then costs the sidecar a bounded amount of memory
 * instead of growing it until the kernel kills the pod. Like HAProxy's and
 * nginx's connection caps it is a plain number; connections already past the
 * verdict never count.
 */

/**
 * The default cap. Each pending connection costs at most ~60 KB once its
 * handshake has begun (an SSL object and its handshake buffers; measured
 * ~3 KB on the native path and ~16 KB on the Node path while it has sent
 * nothing), so 1024 of them stay near 60 MB: within the injector's default
 * 256 MiB limit on top of a ~60 MB idle sidecar. Legitimate clients finish
 * a handshake in milliseconds, so a sidecar needs a fraction of this.
 */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 1024;

/** One connection's place under the cap; release it once the connection is judged or gone. Idempotent. */
export interface HandshakeSlot {
  release(): void;
}

/** A refusal at the cap; `firstOfBurst` is true for the first one since the count last fell to half the cap. */
export interface CapacityRefusal {
  readonly firstOfBurst: boolean;
}

/** The count of pending inbound connections against the cap. */
export class PendingHandshakes {
  private pending = 0;
  private full = false;
  private readonly noneWaiters: Array<() => void> = [];

  /**
   * Throws RangeError unless `limit` is a positive integer. `onBurstEnd`
   * runs when the count falls to half the cap after refusals (the sidecar
   * then gives the burst's memory back).
   */
  constructor(
    readonly limit: number = DEFAULT_MAX_PENDING_HANDSHAKES,
    private readonly onBurstEnd?: () => void,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`the pending handshake limit must be a positive integer, got ${String(limit)}`);
  }

  /** Connections holding a slot now. */
  get size(): number {
    return this.pending;
  }

  /**
   * Resolves once no connection holds a slot, or after `timeoutMs`. A drain
   * waits for these: a client may already be sending its request on a
   * connection whose handshake the sidecar has not finished judging (a TLS
   * 1.3 client is done half a round trip before the server).
   */
  whenNone(timeoutMs: number): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.noneWaiters.indexOf(done);
        if (i >= 0) this.noneWaiters.splice(i, 1);
        resolve();
      }, timeoutMs);
      this.noneWaiters.push(done);
    });
  }

  /**
   * A slot for a new connection, or the refusal when the cap is reached (the
   * caller closes the connection). Refusals come in bursts; `firstOfBurst`
   * lets the caller log one line per burst rather than one per connection.
   */
  take(): HandshakeSlot | CapacityRefusal {
    if (this.pending >= this.limit) {
      const firstOfBurst = !this.full;
      this.full = true;
      return { firstOfBurst };
    }
    this.pending++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.pending--;
        if (this.pending === 0) for (const w of this.noneWaiters.splice(0)) w();
        if (this.full && this.pending <= this.limit / 2) {
          this.full = false;
          this.onBurstEnd?.();
        }
      },
    };
  }
}

/** Whether `take()` gave a slot. */
export function isSlot(r: HandshakeSlot | CapacityRefusal): r is HandshakeSlot {
  return 'release' in r;
}
