/**
 * The key-exchange gate of the control plane's TLS listeners (discovery and
 * admin): reads a new connection's ClientHello before the TLS server sees
 * it, names the group that server will negotiate (node:tls does not say on
 * the server side), and under the `require` policy refuses a client that
 * cannot do X25519MLKEM768 before any TLS work, so the refusal is counted
 * with its reason instead of surfacing as a bare handshake failure. The
 * bytes read are put back, so the TLS server sees the connection from its
 * first byte. Fails closed under `require`: a ClientHello that cannot be read
 * is refused too; under the other policies it goes on to the TLS server
 * (which refuses it) with the group `unknown`.
 */
import type { Socket } from 'node:net';
import { readClientHello, selectGroup, type KeyExchangePolicy } from '@trellis/shared';

/** The gate's verdict on one connection. */
export type ClientHelloVerdict =
  | { readonly ok: true; readonly group: string }
  | { readonly ok: false; readonly reason: 'kex_not_hybrid' | 'bad_client_hello' | 'closed' | 'timeout'; readonly detail: string };

/**
 * Reads `socket`'s ClientHello (waiting at most `timeoutMs`), then calls
 * `then` once with the verdict. On `ok` the socket is paused with the bytes
 * put back; otherwise the caller closes it (a `closed` socket already is).
 */
export function gateClientHello(socket: Socket, policy: KeyExchangePolicy, timeoutMs: number, then: (v: ClientHelloVerdict) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  let done = false;
  const finish = (v: ClientHelloVerdict): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
    then(v);
  };
  const timer = setTimeout(() => finish({ ok: false, reason: 'timeout', detail: 'no complete ClientHello in time' }), timeoutMs);
  timer.unref();
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const read = readClientHello(seen);
    if (read.status === 'incomplete') return;
    socket.pause();
    socket.unshift(seen);
    if (read.status === 'invalid') {
      if (policy === 'require') return finish({ ok: false, reason: 'bad_client_hello', detail: read.reason });
      return finish({ ok: true, group: 'unknown' });
    }
    const s = selectGroup(read.hello, policy);
    if (s.ok) return finish({ ok: true, group: s.group });
    if (s.reason === 'not_hybrid') return finish({ ok: false, reason: 'kex_not_hybrid', detail: 'the client cannot do X25519MLKEM768 and the key-exchange policy is require' });
    // No shared group: the TLS server refuses it with the right alert.
    return finish({ ok: true, group: 'unknown' });
  };
  const onClose = (): void => finish({ ok: false, reason: 'closed', detail: 'closed before its ClientHello' });
  socket.on('data', onData);
  socket.once('close', onClose);
  socket.resume();
}
