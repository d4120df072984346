import { expect } from 'chai';
import { Agent } from 'node:http';
import { request as httpRequest } from 'node:http';
import { TestCa } from '@trellis/testkit';
import { createLogger } from '@trellis/shared';
import { dataPaths, IdentityManager, Sidecar, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, signCsr, startHttpApp } from './helpers/fixture';

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/shop/sa/server`;
const CLIENT_ID = `spiffe://${TD}/ns/shop/sa/client`;

function get(port: number, agent: Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/r', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const dataPath of dataPaths()) describe(`Certificate rotation under traffic [${dataPath}]`, function () {
  this.timeout(30_000);

  it('Should rotate both sidecars every few seconds with fresh keys and fail no request, keeping open connections', async () => {
    const ca = await TestCa.create(TD);
    const app = await startHttpApp();
    const mk = (inbound: boolean, targetPort = 0): Sidecar =>
      new Sidecar(
        {
          inbound: inbound ? [{ host: '127.0.0.1', port: 0, appPort: app.port, http: true }] : [],
          outbound: inbound ? [] : [{ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${targetPort}`, spiffeId: SERVER_ID } }],
          dataPath, workload: { namespace: 'shop', labels: {} },
        },
        { logger: process.env.H5_DEBUG ? createLogger({ component: 'test', sink: process.stderr, level: 'debug' }) : silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
      );
    const server = mk(true);
    server.state.update({ bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    const serials: string[] = [];
    const managers: IdentityManager[] = [];
    const manage = (sc: Sidecar, id: string): IdentityManager => {
      const m = new IdentityManager({
        state: sc.state,
        issue: (csr) => signCsr(ca, csr, 3000),
        logger: silentAuthz.logger,
        clock: () => new Date(),
        spiffeId: id,
        onRotation: (result, creds) => {
          if (result === 'ok') serials.push(creds!.serialHex);
        },
      });
      managers.push(m);
      return m;
    };
    await manage(server, SERVER_ID).start();
    await server.start();
    const client = mk(false, server.inbound[0]!.port);
    client.state.update({ bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await manage(client, CLIENT_ID).start();
    await client.start();
    const port = client.outbound[0]!.port;
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const firstKeys = [server.state.current().credentials!.keyPem, client.state.current().credentials!.keyPem];
      let ok = 0;
      const failures: string[] = [];
      const deadline = Date.now() + 5000;
      // Two loops at once: a new connection per request, and one kept-alive connection.
      const loop = async (agent: Agent | false): Promise<void> => {
        while (Date.now() < deadline) {
          try {
            const status = await get(port, agent);
            if (status === 200) ok++;
            else failures.push(`status ${status}`);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      };
      await Promise.all([loop(false), loop(keepAlive)]);
      expect(failures).to.deep.equal([]);
      expect(ok).to.be.greaterThan(20);
      // 3 s certificates rotated at about half-life for about 5 s: several each.
      expect(serials.length).to.be.at.least(6);
      expect(new Set(serials).size).to.equal(serials.length);
      expect(server.state.current().credentials!.keyPem).to.not.equal(firstKeys[0]);
      expect(client.state.current().credentials!.keyPem).to.not.equal(firstKeys[1]);
    } finally {
      keepAlive.destroy();
      for (const m of managers) m.stop();
      await client.stop(0);
      await server.stop(0);
      await app.close();
    }
  });
});
