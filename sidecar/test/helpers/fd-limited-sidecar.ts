/**
 * A sidecar in a process of its own, for tests that must limit that
 * process (its descriptor limit, say). Reads JSON from stdin: our key and
 * chain PEMs, the root PEM, the app port and the data path; serves one
 * STRICT inbound TCP listener; prints `{"port":N}` once listening.
 */
import { silentLogger } from '@trellis/shared';
import { Sidecar, makeCredentials, makeTrustBundle, sharedAuthorizer } from '../../src/index';

async function main(): Promise<void> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const input = JSON.parse(text) as { keyPem: string; chainPem: string; rootPem: string; appPort: number; dataPath: 'native' | 'node' };
  const sc = new Sidecar(
    { inbound: [{ host: '127.0.0.1', port: 0, appPort: input.appPort, http: false }], outbound: [], dataPath: input.dataPath, workload: { namespace: 'shop', labels: {} } },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  sc.state.update({ credentials: makeCredentials(input.keyPem, input.chainPem), bundle: makeTrustBundle([input.rootPem]), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
  await sc.start();
  process.stdout.write(JSON.stringify({ port: sc.inbound[0]!.port }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`fd-limited-sidecar: ${(err as Error).message}\n`);
  process.exit(1);
});
