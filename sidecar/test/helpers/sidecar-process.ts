/**
 * A sidecar in a process of its own, for tests that must limit or measure
 * that process (its descriptor limit, its resident memory). Reads JSON from
 * stdin: our key and chain PEMs, the root PEM, the app port, the data path,
 * and optionally `maxPendingHandshakes` and `handshakeTimeoutMs`; serves one
 * STRICT inbound TCP listener; prints `{"port":N}` once listening. When
 * spawned with an IPC channel it answers the message `"stats"` with
 * `{ stats: <Prometheus text> }` and `"memory"` with
 * `{ memory: process.memoryUsage() }`, so a test can read the counters without
 * touching the process's memory with an HTTP server of its own.
 */
import { silentLogger } from '@trellis/shared';
import { Sidecar, makeCredentials, makeTrustBundle, sharedAuthorizer } from '../../src/index';

/** What the helper reads from stdin. */
export interface SidecarProcessInput {
  keyPem: string;
  chainPem: string;
  rootPem: string;
  appPort: number;
  dataPath: 'native' | 'node';
  maxPendingHandshakes?: number;
  handshakeTimeoutMs?: number;
}

async function main(): Promise<void> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const input = JSON.parse(text) as SidecarProcessInput;
  const sc = new Sidecar(
    {
      inbound: [{ host: '127.0.0.1', port: 0, appPort: input.appPort, http: false }],
      outbound: [],
      dataPath: input.dataPath,
      workload: { namespace: 'shop', labels: {} },
      maxPendingHandshakes: input.maxPendingHandshakes,
      handshakeTimeoutMs: input.handshakeTimeoutMs,
    },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  sc.state.update({ credentials: makeCredentials(input.keyPem, input.chainPem), bundle: makeTrustBundle([input.rootPem]), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
  await sc.start();
  process.on('message', (m) => {
    if (m === 'stats') void sc.metrics.registry.metrics().then((stats) => process.send?.({ stats }));
    if (m === 'memory') process.send?.({ memory: process.memoryUsage() });
  });
  process.stdout.write(JSON.stringify({ port: sc.inbound[0]!.port }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`sidecar-process: ${(err as Error).message}\n`);
  process.exit(1);
});
