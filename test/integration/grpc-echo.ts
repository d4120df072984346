/**
 * The gRPC service the HTTP/2 tests call through the sidecars: raw bytes in
 * and out (no protobuf), a generic grpc-js client for it, and the calls the
 * tests make. Each test's grpc-js server implements the methods it needs.
 */
import * as grpc from '@grpc/grpc-js';

const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };

/** `trellis.test.Echo` (Unary, Count: server streaming, Chat: bidi, Slow) and `trellis.test.Admin/Reset`, which policies deny. */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Unary: { path: '/trellis.test.Echo/Unary', requestStream: false, responseStream: false, ...raw },
  Count: { path: '/trellis.test.Echo/Count', requestStream: false, responseStream: true, ...raw },
  Chat: { path: '/trellis.test.Echo/Chat', requestStream: true, responseStream: true, ...raw },
  Slow: { path: '/trellis.test.Echo/Slow', requestStream: false, responseStream: false, ...raw },
  Reset: { path: '/trellis.test.Admin/Reset', requestStream: false, responseStream: false, ...raw },
};

/** A client of ECHO_SERVICE: one function per method. */
export type EchoClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;
/** Its constructor. */
export const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo') as unknown as new (addr: string, creds: grpc.ChannelCredentials, opts?: object) => EchoClient;

/** A unary call; resolves with the error or answer and the trailers (the status metadata). */
export function unary(c: EchoClient, method: string, body: Buffer, opts: grpc.CallOptions = {}): Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = c[method]!(body, new grpc.Metadata(), opts, (err: grpc.ServiceError | null, res?: Buffer) => setImmediate(() => resolve({ err, res, trailers }))) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

/** A Chat (bidi) call sending `m0`..`m{n-1}` then half-closing; resolves with every message received. */
export async function chat(c: EchoClient, n: number): Promise<string[]> {
  const call = c.Chat!() as grpc.ClientDuplexStream<Buffer, Buffer>;
  const got: string[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (m: Buffer) => got.push(m.toString()));
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (let i = 0; i < n; i++) call.write(Buffer.from(`m${i}`));
  call.end();
  await done;
  return got;
}
