/**
 * The hot path: joins two connected sockets in both directions.
 *
 * Each side is read through `direct-read` when the listener could set it up
 * (every socket on Node 20), else through `pipe()`; around that: Nagle off on both sides (request/response
 * traffic otherwise waits for delayed ACKs), half-close passed through (so a
 * client that shuts its write side still gets the reply), an error on either
 * side tearing down both, and byte counts read once from the sockets at the
 * end rather than counted per chunk.
 */
import type { Duplex } from 'node:stream';
import type { DirectRead } from './direct-read';

/** A socket-like stream with the counters net.Socket and tls.TLSSocket have. */
export type ProxySocket = Duplex & { setNoDelay?(noDelay?: boolean): unknown; bytesRead?: number; bytesWritten?: number };

/** Bytes that went each way once the splice is over. */
export interface SpliceResult {
  /** Bytes read from `a` (and written to `b`). */
  aToB: number;
  /** Bytes read from `b` (and written to `a`). */
  bToA: number;
}

/** How each side is read: by default a stream pipe; `direct` when the socket was opened with `directRead().onread`. */
export interface SpliceOptions {
  aDirect?: DirectRead;
  bDirect?: DirectRead;
}

/** Joins `a` and `b`; calls `onDone` once when both are closed. */
export function splice(a: ProxySocket, b: ProxySocket, onDone?: (r: SpliceResult) => void, opts: SpliceOptions = {}): void {
  a.setNoDelay?.(true);
  b.setNoDelay?.(true);
  let closed = 0;
  const fail = (): void => {
    a.destroy();
    b.destroy();
  };
  const done = (): void => {
    if (++closed === 2 && onDone) onDone({ aToB: b.bytesWritten ?? 0, bToA: a.bytesWritten ?? 0 });
  };
  a.on('error', fail);
  b.on('error', fail);
  a.once('close', () => {
    done();
    if (!b.destroyed && !b.writableEnded) b.destroy();
  });
  b.once('close', () => {
    done();
    if (!a.destroyed && !a.writableEnded) a.destroy();
  });
  forward(a, b, opts.aDirect);
  forward(b, a, opts.bDirect);
}

function forward(src: ProxySocket, dst: ProxySocket, direct: DirectRead | undefined): void {
  if (!direct) {
    src.pipe(dst);
    return;
  }
  direct.attach(src, dst);
  // With onread no 'data' flows through the stream, but 'end' still does.
  src.once('end', () => dst.end());
  src.resume();
}
