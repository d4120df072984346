/**
 * Reading a connection's first bytes until they tell what it is (TLS or
 * plaintext, HTTP/2 preface or HTTP/1.1, a whole ClientHello), then putting
 * them back so that whoever takes the connection reads it from its start.
 */
import type { Socket } from 'node:net';

/**
 * Reads `socket` until `classify(seen)` returns something other than
 * `'need-more'`, then stops reading, pauses the socket, unshifts every byte
 * seen and calls `then` with the answer. Returns a function that stops
 * waiting (for a timer or a close the caller handles).
 */
export function readFirstBytes<T>(socket: Socket, classify: (seen: Buffer) => T | 'need-more', then: (kind: T, seen: Buffer) => void): () => void {
  let seen: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const kind = classify(seen);
    if (kind === 'need-more') return;
    socket.off('data', onData);
    socket.pause();
    socket.unshift(seen);
    then(kind, seen);
  };
  socket.on('data', onData);
  socket.resume();
  return () => {
    socket.off('data', onData);
    socket.pause();
  };
}
