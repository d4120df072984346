/**
 * The platform floor for `npm run bench -- control-plane`: a plain
 * @grpc/grpc-js TLS server, with nothing of Trellis in the request path,
 * serving the same Discovery service definition with the same server options
 * and the same kind of credentials as the control plane (a P-256 certificate
 * from the bench CA, client certificates asked for but not required). Each
 * StreamResources call answers its first request with one fixed response and
 * stays open until the client leaves, as a sidecar's stream does. What this
 * process costs per connection is what Node + grpc-js + TLS cost on this
 * machine, before any of our code runs.
 *
 * argv[2]: JSON {certFile, keyFile, caFile, responseBytes}. Prints
 * {"port":N} on stdout once listening; exits on SIGTERM.
 */
import * as grpc from '@grpc/grpc-js';
import { SVID_TYPE_URL } from '@trellis/shared';
import { loadDiscoveryService } from '@trellis/control-plane';

interface Config {
  certFile: string;
  keyFile: string;
  caFile: string;
  responseBytes: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;

// The same server options as control-plane/src/discovery/grpc-discovery-server.ts.
const server = new grpc.Server({
  'grpc.max_receive_message_length': 4 * 1024 * 1024,
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.enable_channelz': 0,
});
// One response, the size of an SVID answer, built once: the floor does no per-stream work.
const response = { type_url: SVID_TYPE_URL, version_info: 'v1', nonce: '1', resources: [{ name: 'default', body: Buffer.alloc(cfg.responseBytes, 0x61) }] };
// The same service definition and message codec as the control plane.
server.addService(loadDiscoveryService(), {
  StreamResources: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
    let answered = false;
    call.on('data', () => {
      if (answered) return;
      answered = true;
      call.write(response);
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
});
const provider = new grpc.experimental.FileWatcherCertificateProvider({
  certificateFile: cfg.certFile,
  privateKeyFile: cfg.keyFile,
  caCertificateFile: cfg.caFile,
  refreshIntervalMs: 3_600_000,
});
const creds = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
server.bindAsync('127.0.0.1:0', creds, (err, port) => {
  if (err) {
    process.stderr.write(`bare-grpc-server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port }) + '\n');
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
