/**
 * The apps of the dataplane benchmark's `l7` part, as one process of their
 * own: an h2c (prior knowledge) node:http2 app answering the same short body
 * as bench-app.ts's HTTP/1.1 app, and a grpc-js server with a unary echo and
 * a bidirectional echo stream. Prints `{"h2c":PORT,"grpc":PORT}` once
 * listening.
 */
import { createServer } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { BENCH_GRPC_SERVICE } from './l7-grpc-service';

const body = Buffer.from('hello from the benchmark app\n');
const h2c = createServer();
h2c.on('stream', (stream) => {
  stream.on('error', () => undefined);
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': body.length });
  stream.end(body);
});

const server = new grpc.Server();
server.addService(BENCH_GRPC_SERVICE, {
  Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
  Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(m));
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
});

h2c.listen(0, '127.0.0.1', () => {
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, grpcPort) => {
    if (err) throw err;
    process.stdout.write(JSON.stringify({ h2c: (h2c.address() as { port: number }).port, grpc: grpcPort }) + '\n');
  });
});
