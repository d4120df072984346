/**
 * Loads the Discovery client constructor from shared/proto at run time, with
 * the same proto-loader options the control plane uses.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DISCOVERY_PROTO_FILE, PROTO_ROOT } from '@trellis/shared';

let ctor: grpc.ServiceClientConstructor | null = null;

/** The generated-at-runtime Discovery client class (loaded once). */
export function discoveryClientConstructor(): grpc.ServiceClientConstructor {
  if (!ctor) {
    const def = protoLoader.loadSync(DISCOVERY_PROTO_FILE, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { trellis: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } } };
    ctor = pkg.trellis.discovery.v1.Discovery;
  }
  return ctor;
}
