/**
 * Clients that close the moment their side of the handshake is done (a TLS
 * health check, a benchmark, a client killed mid-connect) must not hold the
 * inbound port's pending-handshake slots until the handshake deadline: on
 * the Node path node:tls then reported only an 'end', and 1,024 such clients
 * within the deadline (10 s) had every later client refused with
 * `handshake_limit`. The same held for a port probe that connects and
 * closes without a byte. Both are counted as `client_closed`: nothing was
 * refused from the client's side.
 */
import { expect } from 'chai';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { silentLogger } from '@trellis/shared';
import { TestCa, waitFor } from '@trellis/testkit';
import { dataPaths, Sidecar, sharedAuthorizer, type DataPath } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, tcpExchange, tlsExchange } from './helpers/fixture';

const TD = 'cluster.local';

/** trellis_refusals_total for inbound `reason`. */
async function refusals(sc: Sidecar, reason: string): Promise<number> {
  const m = await sc.metrics.refusals.get();
  return m.values.filter((v) => v.labels.direction === 'inbound' && v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

const CAP = 4;

/**
 * A started sidecar with one TCP inbound port to an echo app, `mode` for
 * every port, at most CAP handshakes pending, and the handshake deadline and
 * (unless given) the detection timeout far beyond the test: a slot held
 * until either cannot come back while it runs.
 */
async function startSidecar(dataPath: DataPath, mode: 'STRICT' | 'PERMISSIVE', detectTimeoutMs = 120_000): Promise<{ sc: Sidecar; ca: TestCa; port: number; pending(): Promise<number>; close(): Promise<void> }> {
  const ca = await TestCa.create(TD);
  const app = await startEchoApp();
  const sc = new Sidecar(
    {
      inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }],
      outbound: [],
      dataPath,
      workload: { namespace: 'shop', labels: {} },
      maxPendingHandshakes: CAP,
      handshakeTimeoutMs: 120_000,
      detectTimeoutMs,
    },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  sc.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/web`), bundle: bundleOf(ca), peerAuth: { mode, portModes: {} }, authz: { policies: [] } });
  await sc.start();
  return {
    sc,
    ca,
    port: sc.inbound[0]!.port,
    pending: async () => Number((await sc.metrics.registry.metrics()).match(/^trellis_handshakes_pending (\d+)/m)?.[1]),
    close: async () => {
      await sc.stop(0);
      await app.close();
    },
  };
}

for (const dataPath of dataPaths()) describe(`Clients that close as soon as their handshake is done [${dataPath}]`, function () {
  this.timeout(30_000);

  it(`Should give their pending slots back at once, so that ${CAP * 5} of them against a cap of ${CAP} leave the port open to the next client`, async () => {
    const { sc, ca, port, pending, close } = await startSidecar(dataPath, 'STRICT');
    try {
      const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/checker`);
      let handshakes = 0;
      for (let i = 0; i < CAP * 5; i++) {
        // One at a time, each closed (FIN, no close_notify) the moment its own side is done.
        await new Promise<void>((resolve) => {
          const s = tlsConnect({ host: '127.0.0.1', port, key: client.key.keyPem, cert: client.chainPem, ca: ca.root.pem, checkServerIdentity: () => undefined });
          s.on('secureConnect', () => {
            handshakes++;
            s.destroy();
            resolve();
          });
          s.on('error', () => resolve());
        });
        // Never more than a cap's worth in flight: wait for the earlier ones to be let go.
        await waitFor(`fewer than ${CAP} handshakes pending`, async () => (await pending()) < CAP);
      }
      expect(handshakes, 'each client finished its side of the handshake').to.equal(CAP * 5);
      await waitFor('no handshake pending', async () => (await pending()) === 0);
      const r = await tlsExchange(port, { client, ca: ca.root.pem, payload: 'still open' });
      expect(r.data, r.error).to.equal('echo:still open');
      expect(await sc.metrics.registry.metrics()).to.not.match(/reason="handshake_limit"/);
      // Nothing was refused from the client's side: counted as clients that closed, not as failed handshakes.
      expect(await refusals(sc, 'client_closed'), 'clients that closed during our side of the handshake').to.be.above(0);
      expect(await refusals(sc, 'handshake_failed')).to.equal(0);
      // A port probe (connect, then close without a byte) is one too.
      const before = await refusals(sc, 'client_closed');
      await new Promise<void>((resolve, reject) => {
        const probe = netConnect(port, '127.0.0.1', () => probe.end());
        probe.on('close', () => resolve());
        probe.on('error', reject);
      });
      await waitFor('the probe counted as client_closed', async () => (await refusals(sc, 'client_closed')) === before + 1);
      expect(await refusals(sc, 'handshake_failed')).to.equal(0);
    } finally {
      await close();
    }
  });
  it(`Should give a PERMISSIVE port's slot back at once to a client that closes before its first bytes, ${CAP * 5} times against a cap of ${CAP}`, async () => {
    const { sc, port, pending, close } = await startSidecar(dataPath, 'PERMISSIVE');
    try {
      for (let i = 0; i < CAP * 5; i++) {
        // A TCP probe, or a client that sent part of a TLS record header (not enough to classify) and closed.
        await new Promise<void>((resolve, reject) => {
          const probe = netConnect(port, '127.0.0.1', () => (i % 2 === 0 ? probe.end() : probe.end(Buffer.from([0x16, 0x03]))));
          probe.on('close', () => resolve());
          probe.on('error', reject);
        });
        await waitFor(`fewer than ${CAP} connections pending`, async () => (await pending()) < CAP);
      }
      await waitFor('no connection pending', async () => (await pending()) === 0);
      expect(await refusals(sc, 'client_closed')).to.equal(CAP * 5);
      expect(await refusals(sc, 'handshake_limit')).to.equal(0);
      // The port still serves plaintext (PERMISSIVE) to the next client.
      expect((await tcpExchange(port, 'still open')).data).to.equal('echo:still open');
    } finally {
      await close();
    }
  });
  it('Should pass on, after the detection timeout, the first byte of a plaintext client on a PERMISSIVE port even when it looked like the start of TLS', async () => {
    // 0x16 is how a TLS record starts: alone it cannot be told apart, so the detection timeout decides (plaintext).
    const { port, close } = await startSidecar(dataPath, 'PERMISSIVE', 200);
    try {
      const got = await new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        const s = netConnect(port, '127.0.0.1', () => {
          s.write(Buffer.from([0x16]));
          setTimeout(() => s.end('x'), 600);
        });
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('error', () => resolve(Buffer.concat(chunks)));
        s.on('close', () => resolve(Buffer.concat(chunks)));
      });
      expect(got.toString('latin1').replace(/echo:/g, '')).to.equal('\x16x');
    } finally {
      await close();
    }
  });
});
