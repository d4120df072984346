/** Binding a listener and learning the port it got. */
import type { Server } from 'node:net';

/**
 * Binds `server` to `host:port` and resolves with the port actually bound
 * (the kernel's choice when `port` is 0); rejects with the bind error
 * (EADDRINUSE, EACCES) instead of letting it surface as an unhandled event.
 * Once listening, later server errors (an accept failing with EMFILE when
 * the process is out of descriptors) go to `onError`: unhandled, they would
 * take the whole sidecar down, and the listener keeps accepting once
 * descriptors are free again.
 */
export function bindServer(server: Server, port: number, host: string, onError: (err: Error) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', onError);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}
