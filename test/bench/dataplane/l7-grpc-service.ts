/** The gRPC service of the dataplane benchmark's `l7` part: raw bytes in, the same bytes out. */
import type { ServiceDefinition } from '@grpc/grpc-js';

const raw = { requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b };

/** `/trellis.bench.Echo/Unary` and the bidirectional `/trellis.bench.Echo/Chat`. */
export const BENCH_GRPC_SERVICE: ServiceDefinition = {
  Unary: { path: '/trellis.bench.Echo/Unary', requestStream: false, responseStream: false, ...raw },
  Chat: { path: '/trellis.bench.Echo/Chat', requestStream: true, responseStream: true, ...raw },
};
