/**
 * The Discovery service definition loaded with @grpc/proto-loader and the
 * control plane's options, for tests that stand up a grpc-js server the
 * sidecar's own (grpc-js-free) client must talk to.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DISCOVERY_PROTO_FILE, PROTO_ROOT } from '@trellis/shared';

/** The service definition to pass to `grpc.Server#addService`. */
export function discoveryServiceDefinition(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync(DISCOVERY_PROTO_FILE, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_ROOT] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { trellis: { discovery: { v1: { Discovery: grpc.ServiceClientConstructor } } } };
  return pkg.trellis.discovery.v1.Discovery.service;
}
