/**
 * Real sidecars around an `/http` port, as several suites need them: a
 * server sidecar whose `/http` inbound port fronts `appPort`, and
 * optionally a client sidecar whose `/http` outbound listener dials it
 * (STRICT mTLS, one CA, no policy).
 */
import { silentLogger } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { sharedAuthorizer, Sidecar } from './harness';
import { bundleOf, credentialsFrom } from './fixture';

const TD = 'cluster.local';

/** The server sidecar (`cart`) in front of `appPort`; `mode` is its PeerAuthentication. */
export async function httpServerSidecar(ca: TestCa, appPort: number, dataPath: 'native' | 'node', opts: { mode?: 'STRICT' | 'PERMISSIVE'; detectTimeoutMs?: number } = {}): Promise<Sidecar> {
  const server = new Sidecar(
    { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], dataPath, workload: { namespace: 'shop', labels: {} }, ...(opts.detectTimeoutMs ? { detectTimeoutMs: opts.detectTimeoutMs } : {}) },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  server.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: opts.mode ?? 'STRICT', portModes: {} }, authz: { policies: [] } });
  await server.start();
  return server;
}

/** The client sidecar (`web`) whose `/http` outbound listener dials `server`'s port. */
export async function httpClientSidecar(ca: TestCa, server: Sidecar, dataPath: 'native' | 'node'): Promise<Sidecar> {
  const client = new Sidecar(
    {
      inbound: [],
      outbound: [{ host: '127.0.0.1', port: 0, http: true, target: { kind: 'explicit', address: `127.0.0.1:${server.inbound[0]!.port}`, spiffeId: `spiffe://${TD}/ns/shop/sa/cart` } }],
      dataPath,
      workload: { namespace: 'shop', labels: {} },
    },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  client.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/web`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
  await client.start();
  return client;
}
