/** Binding a listener and learning the port it got. */
import type { Server } from 'node:net';

/**
 * Binds `server` to `host:port` and resolves with the port actually bound
 * (the kernel's choice when `port` is 0); rejects with the bind error
 * (EADDRINUSE, EACCES) instead of letting it surface as an unhandled event.
 */
export function bindServer(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}
