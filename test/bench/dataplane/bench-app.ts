/**
 * The small app every dataplane benchmark path talks to, run as its own
 * process: `GET /` answers a short body over keep-alive; a TCP connection to
 * the bulk port receives BULK_MB megabytes and is closed.
 * Prints `{"http":PORT,"bulk":PORT}` on stdout once listening.
 */
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';

const body = Buffer.from('hello from the benchmark app\n');
const http = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
http.keepAliveTimeout = 60_000;

const chunk = Buffer.alloc(64 * 1024, 0x61);
const bulkMb = Number(process.env.BULK_MB ?? 256);
const bulk = createNetServer((s) => {
  s.on('error', () => s.destroy());
  let left = bulkMb * 1024 * 1024;
  const pump = (): void => {
    while (left > 0) {
      left -= chunk.length;
      if (!s.write(chunk)) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
});

http.listen(0, '127.0.0.1', () => {
  bulk.listen(0, '127.0.0.1', () => {
    const port = (srv: typeof http | typeof bulk): number => (srv.address() as { port: number }).port;
    process.stdout.write(JSON.stringify({ http: port(http), bulk: port(bulk) }) + '\n');
  });
});
