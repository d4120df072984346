/**
 * The client sidecar's pooled HTTP/2 connection and a revoked server
 * (issue #15's pool): an `/http` outbound listener carries every h2c stream
 * of its app over one multiplexed mTLS connection per upstream, so when the
 * *server* workload's identity is revoked through the control plane, that
 * connection must be closed (its open streams reset) and no new call may
 * reach the revoked server. Real `trellis control-plane` and `trellis
 * sidecar` processes on loopback, node:http2 as the app on both ends, on
 * each data path.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect as h2Connect, constants, createServer as createH2Server, type Http2Server } from 'node:http2';
import { join } from 'node:path';
import { controlPlanePorts, freePort, h2Get, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, waitFor } from '@trellis/testkit';
import { joinToken } from './control-plane-harness';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

/** Which data paths the real binary is run on: the Node path always, the native relay unless the suite runs on the Node path only. */
function dataPaths(): Array<'auto' | 'node'> {
  return process.env.TRELLIS_DATA_PATH === 'node' ? ['node'] : ['auto', 'node'];
}

describe('A revoked server and the client sidecar\'s pooled h2 connection (real control plane and sidecars)', function () {
  this.timeout(90_000);
  const tmp = makeTmpDir('trellis-h2-pool-revoke-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  const apps: Http2Server[] = [];
  const revoked: string[] = [];
  let cpAddress = '';

  before(async () => {
    const init = trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);
    mkdirSync(f('policies'));
    writeFileSync(f('revocations.yaml'), 'serials: []\nspiffeIds: []\n');
    // Port 0 everywhere the process says what it bound (a port picked free here could be taken before the child binds it).
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--revocations', f('revocations.yaml'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    cpAddress = `127.0.0.1:${(await controlPlanePorts(cp)).listen}`;
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs(25);
  });

  after(async () => {
    await group.killAllAndWait();
    for (const a of apps) a.close();
    tmp.cleanup();
  });

  /** A single-use join token for `id`, written to a file for --token-file. */
  function token(name: string, id: string, extra: string[]): string {
    writeFileSync(f(`${name}.token`), joinToken(f('ca'), id, ['--uses', '1', ...extra]) + '\n', { mode: 0o600 });
    return f(`${name}.token`);
  }

  for (const dataPath of dataPaths()) {
    it(`Should close the pooled connection to a server whose identity the control plane revokes, resetting its open streams, and let no new call reach it [${dataPath} data path]`, async () => {
      const server = `spiffe://${TD}/ns/shop/sa/cart-${dataPath}`;
      // The server's app (h2c): /stream answers and stays open; every request is counted.
      const served: string[] = [];
      const app = createH2Server();
      apps.push(app);
      app.on('stream', (stream, headers) => {
        stream.on('error', () => undefined);
        const path = String(headers[':path']);
        served.push(path);
        stream.respond({ ':status': 200 });
        if (path === '/stream') stream.write('first chunk');
        else stream.end(`cart ${path}`);
      });
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
      const appPort = (app.address() as { port: number }).port;

      // The inbound port is published by the join token, so it is picked before the start.
      const inbound = await freePort();
      const cart = group.spawn(['sidecar', '--control-plane', cpAddress, '--ca-bundle', f('ca/root.pem'), '--token-file', token(`cart-${dataPath}`, server, ['--service', `cart-${dataPath}`, '--ports', String(inbound)]),
        '--service', `cart-${dataPath}`, '--service-account', `cart-${dataPath}`, '--inbound', `127.0.0.1:${inbound}=${appPort}/http`, '--admin', '127.0.0.1:0', '--data-path', dataPath]);
      const cartAdmin = (await sidecarPorts(cart)).admin!;
      // The client's outbound names the server by address and identity, so only the pool's own checks stand between it and the server.
      const web = group.spawn(['sidecar', '--control-plane', cpAddress, '--ca-bundle', f('ca/root.pem'), '--token-file', token(`web-${dataPath}`, WEB, ['--service', 'web']),
        '--service', 'web', '--service-account', 'web', '--outbound', `127.0.0.1:0=127.0.0.1:${inbound}/http#${server}`, '--admin', '127.0.0.1:0', '--data-path', dataPath]);
      const webPorts = await sidecarPorts(web);
      const [outbound, webAdmin] = [webPorts.outbound[0]!, webPorts.admin!];
      await waitFor('both sidecars ready', async () => (await httpGet(cartAdmin, '/ready')).status === 200 && (await httpGet(webAdmin, '/ready')).status === 200, 30_000);

      const session = h2Connect(`http://127.0.0.1:${outbound}`);
      session.on('error', () => undefined);
      try {
        expect(await h2Get(session, '/before')).to.deep.equal({ status: 200, body: 'cart /before' });
        // A stream open on the pooled connection, its answer started.
        const open = session.request({ ':path': '/stream' });
        open.on('error', () => undefined);
        const firstChunk = new Promise<string>((resolve) => open.once('data', (d: Buffer) => resolve(d.toString())));
        let closedWith: number | undefined;
        open.once('close', () => (closedWith = open.rstCode ?? -1));
        expect(await firstChunk).to.equal('first chunk');

        revoked.push(server);
        writeFileSync(f('revocations.yaml'), `serials: []\nspiffeIds: [${revoked.map((id) => JSON.stringify(id)).join(', ')}]\n`);
        await waitFor('the client sidecar to hold the revocation', async () => {
          const dump = JSON.parse((await httpGet(webAdmin, '/config_dump')).body) as { revocations: { spiffeIds: string[] } };
          return dump.revocations.spiffeIds.includes(server);
        });
        await waitFor('the open stream on the pooled connection to close', () => closedWith !== undefined, 5_000);
        // Reset (RST_STREAM with an error code), not ended as if the server had finished its answer.
        expect(closedWith, 'the open stream\'s RST_STREAM code').to.be.oneOf([constants.NGHTTP2_INTERNAL_ERROR, constants.NGHTTP2_CANCEL]);

        // New calls on the app's same connection to its sidecar: refused, and none reaches the revoked server.
        const servedBefore = served.length;
        for (let i = 0; i < 3; i++) expect(await h2Get(session, `/after${i}`)).to.deep.include({ status: 502 });
        expect(served.slice(servedBefore), 'requests the revoked server received').to.deep.equal([]);
        const stats = (await httpGet(webAdmin, '/stats')).body;
        expect(Number(/^trellis_refusals_total\{direction="outbound",reason="revoked"\} (\S+)$/m.exec(stats)?.[1] ?? 0), 'outbound refusals counted as revoked').to.be.at.least(3);
      } finally {
        session.destroy();
      }
    });
  }
});
