/**
 * Reading a connection's first bytes until they tell what it is (TLS or
 * plaintext, HTTP/2 preface or HTTP/1.1, a whole ClientHello), then putting
 * them back so that whoever takes the connection reads it from its start.
 *
 * The sidecar's sockets are half-open (`allowHalfOpen`): a peer's FIN is an
 * 'end', and no 'close' follows until our side closes too. So a peer that
 * closes before its first bytes told anything is handled here (its socket
 * closed, or `onEnd`), never left open; and with `timeoutMs` a peer that
 * stops sending part-way is handed on as `fallback` instead of held.
 */
import type { Socket } from 'node:net';

/** What to do when the bytes never tell. */
export interface FirstBytesOptions<T> {
  /** The peer sent FIN before the bytes told: called (with the bytes seen) instead of closing the socket. */
  onEnd?: (seen: Buffer) => void;
  /** With `fallback`: after this many ms without an answer, the bytes seen are put back and `then(fallback)` called. */
  timeoutMs?: number;
  fallback?: T;
}

/**
 * Reads `socket` until `classify(seen)` returns something other than
 * `'need-more'`, then stops reading, pauses the socket, unshifts every byte
 * seen and calls `then` with the answer. Returns a function that stops
 * waiting (for a timer or a close the caller handles).
 */
export function readFirstBytes<T>(socket: Socket, classify: (seen: Buffer) => T | 'need-more', then: (kind: T, seen: Buffer) => void, opts: FirstBytesOptions<T> = {}): () => void {
  let seen: Buffer = Buffer.alloc(0);
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    socket.off('data', onData);
    socket.off('end', onEnd);
    if (timer) clearTimeout(timer);
    socket.pause();
  };
  const decide = (kind: T): void => {
    stop();
    if (seen.length > 0) socket.unshift(seen);
    then(kind, seen);
  };
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const kind = classify(seen);
    if (kind !== 'need-more') decide(kind);
  };
  // Nothing can be put back after the end: the connection is over before it said what it is.
  const onEnd = (): void => {
    stop();
    if (opts.onEnd) opts.onEnd(seen);
    else socket.destroy();
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  if (opts.timeoutMs !== undefined && opts.fallback !== undefined) {
    const fallback = opts.fallback;
    timer = setTimeout(() => decide(fallback), opts.timeoutMs);
    timer.unref();
  }
  socket.resume();
  return stop;
}
