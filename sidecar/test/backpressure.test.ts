import { expect } from 'chai';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { TestCa } from '@trellis/testkit';
import { dataPaths, Sidecar, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, credentialsFrom } from './helpers/fixture';

const TD = 'cluster.local';
const MB = 1024 * 1024;

for (const dataPath of dataPaths()) describe(`Backpressure through a sidecar pair [${dataPath}]`, function () {
  this.timeout(30_000);

  it('Should deliver every byte of a large stream to a slow reader in both directions, in order', async () => {
    const ca = await TestCa.create(TD);
    const total = 24 * MB;
    const pattern = (i: number): number => (i * 31 + 7) & 0xff;
    // The app sends `total` patterned bytes and counts what it receives.
    let appReceived = 0;
    let appReceivedOk = true;
    const app: Server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      let sent = 0;
      const pump = (): void => {
        while (sent < total) {
          const n = Math.min(64 * 1024, total - sent);
          const chunk = Buffer.allocUnsafe(n);
          for (let i = 0; i < n; i++) chunk[i] = pattern(sent + i);
          sent += n;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      s.on('data', (d: Buffer) => {
        for (let i = 0; i < d.length; i++) if (d[i] !== pattern(appReceived + i)) appReceivedOk = false;
        appReceived += d.length;
      });
      pump();
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as { port: number }).port;
    const mk = (inbound: boolean, target = 0): Sidecar =>
      new Sidecar(
        {
          inbound: inbound ? [{ host: '127.0.0.1', port: 0, appPort, http: false }] : [],
          outbound: inbound ? [] : [{ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${target}`, spiffeId: `spiffe://${TD}/ns/a/sa/server` } }],
          dataPath, workload: { namespace: 'a', labels: {} },
        },
        { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
      );
    const server = mk(true);
    server.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/a/sa/server`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await server.start();
    const client = mk(false, server.inbound[0]!.port);
    client.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/a/sa/client`), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await client.start();
    try {
      const { received, ok } = await new Promise<{ received: number; ok: boolean }>((resolve, reject) => {
        let received = 0;
        let ok = true;
        const s = netConnect({ host: '127.0.0.1', port: client.outbound[0]!.port, allowHalfOpen: true });
        // Upload in the other direction at the same time, then half-close.
        const up = Buffer.allocUnsafe(8 * MB);
        for (let i = 0; i < up.length; i++) up[i] = pattern(i);
        s.end(up);
        s.on('data', (d: Buffer) => {
          for (let i = 0; i < d.length; i += 4099) if (d[i] !== pattern(received + i)) ok = false;
          received += d.length;
          // A slow reader: pause now and then so every hop's buffers fill up.
          if (received % (2 * MB) < d.length) {
            s.pause();
            setTimeout(() => s.resume(), 30);
          }
        });
        s.on('error', reject);
        s.on('close', () => resolve({ received, ok }));
      });
      expect(received).to.equal(total);
      expect(ok).to.equal(true);
      expect(appReceived).to.equal(8 * MB);
      expect(appReceivedOk).to.equal(true);
    } finally {
      await client.stop(0);
      await server.stop(0);
      app.close();
    }
  });
});
