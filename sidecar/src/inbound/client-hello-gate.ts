/**
 * Node path: reads the client's ClientHello before any TLS object exists
 * (an idle connection then costs a socket, not an SSL and its buffers,
 * which OpenSSL would also allocate on the peer's FIN), names the group the
 * handshake will use (node:tls says so on client sockets only) and, under
 * the `require` key-exchange policy, refuses a client that cannot do
 * X25519MLKEM768 before any TLS work. The bytes go back for `then`. Fails
 * closed: a connection that ends, times out or offers only classical groups
 * under `require` is reported to `failed`.
 */
import type { Socket } from 'node:net';
import { readClientHello, selectGroup, type KeyExchangePolicy } from '@trellis/shared';
import { readFirstBytes } from '../proxy/first-bytes';

/** Where the outcome goes: `then` with the group, or `failed` with a reason (and a detail when the socket is still open and must be refused). */
export interface ClientHelloOutcome {
  then(group: string): void;
  failed(reason: string, detail?: string): void;
}

/** Reads the ClientHello on `socket` by `deadline` (ms since the epoch) under `policy`. */
export function readClientHelloFirst(socket: Socket, deadline: number, policy: KeyExchangePolicy, out: ClientHelloOutcome): void {
  let bytes = 0;
  const cleanup = (): void => {
    clearTimeout(timer);
    socket.off('close', onClose);
    stop();
  };
  const timer = setTimeout(() => {
    cleanup();
    out.failed('handshake_timeout', bytes === 0 ? 'no bytes from the client' : 'no complete ClientHello');
  }, Math.max(0, deadline - Date.now()));
  // Closed before a whole ClientHello: by the client (a port probe, a health check) unless the socket failed.
  const onClose = (hadError: boolean): void => {
    cleanup();
    out.failed(hadError ? 'handshake_failed' : 'client_closed');
  };
  // The listener's sockets are half-open: a client's FIN is an 'end' (first-bytes.ts), and no 'close' follows
  // until we close our side. Nothing more can come: refuse it now (with a detail, so the socket is closed), or
  // a port probe would hold its pending slot until the deadline.
  const onEnd = (seen: Buffer): void => {
    cleanup();
    out.failed('client_closed', seen.length === 0 ? 'the client closed without sending a byte' : 'the client closed before its ClientHello was complete');
  };
  const stop = readFirstBytes(
    socket,
    (seen) => {
      bytes = seen.length;
      const read = readClientHello(seen);
      return read.status === 'incomplete' ? 'need-more' : read;
    },
    (read) => {
      cleanup();
      if (read.status === 'invalid') return out.then('unknown'); // node:tls refuses it with the right alert
      const chosen = selectGroup(read.hello, policy);
      if (!chosen.ok && chosen.reason === 'not_hybrid') return out.failed('kex_not_hybrid', 'the client cannot do X25519MLKEM768 and the key-exchange policy is require');
      out.then(chosen.ok ? chosen.group : 'unknown');
    },
    { onEnd },
  );
  socket.once('close', onClose);
}
