/**
 * A drain loses no request: a steady stream of keep-alive requests goes
 * through a client sidecar to a service with two instances, and the server
 * sidecar of one is drained (SIGTERM) while the other takes over. Real
 * `trellis control-plane` and `trellis sidecar` processes on loopback, on
 * each data path.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, waitFor } from '@trellis/testkit';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

/** Which data paths the real binary is run on: the Node path always, the native relay unless the suite runs on the Node path only. */
function dataPaths(): Array<'auto' | 'node'> {
  return process.env.TRELLIS_DATA_PATH === 'node' ? ['node'] : ['auto', 'node'];
}

/** An app that names itself in every answer. */
async function app(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
    res.end(name);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port };
}

function exited(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (code) => r(code)));
}

for (const dataPath of dataPaths()) describe(`Draining a server sidecar under steady keep-alive traffic [${dataPath} data path]`, function () {
  this.timeout(90_000);
  const tmp = makeTmpDir('trellis-drain-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  const apps: Server[] = [];
  let cpAddress = '';

  before(async () => {
    const init = trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);
    mkdirSync(f('policies'));
    // Port 0 everywhere the process says what it bound (a port picked free here could be taken before the child binds it).
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    cpAddress = `127.0.0.1:${(await controlPlanePorts(cp)).listen}`;
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs(25);
  });

  after(async () => {
    group.killAll();
    for (const a of apps) {
      a.closeAllConnections();
      a.close();
    }
    tmp.cleanup();
  });

  function token(name: string, id: string, extra: string[]): string {
    const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '1', ...extra]);
    expect(t.status, t.stderr).to.equal(0);
    writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    return f(`${name}.token`);
  }

  /** A cart instance: its app and its server sidecar (an /http port). */
  async function cart(name: string): Promise<{ sidecar: ChildProcess; admin: number }> {
    const a = await app(name);
    apps.push(a.server);
    // The inbound port is published by the join token, so it is picked before the start.
    const inbound = await freePort();
    const sidecar = group.spawn(['sidecar', '--control-plane', cpAddress, '--ca-bundle', f('ca/root.pem'), '--token-file', token(name, CART, ['--service', 'cart', '--ports', String(inbound)]),
      '--service', 'cart', '--inbound', `127.0.0.1:${inbound}=${a.port}/http`, '--admin', '127.0.0.1:0', '--drain', '5s', '--data-path', dataPath]);
    const admin = (await sidecarPorts(sidecar)).admin!;
    await waitFor(`${name} ready`, async () => (await httpGet(admin, '/ready')).status === 200, 30_000);
    return { sidecar, admin };
  }

  it('Should fail no request while one instance drains and the other takes over', async () => {
    const a = await cart('cart-a');
    const web = group.spawn(['sidecar', '--control-plane', cpAddress, '--ca-bundle', f('ca/root.pem'), '--token-file', token('web', WEB, ['--service', 'web']), '--service', 'web',
      '--outbound', '127.0.0.1:0=cart', '--admin', '127.0.0.1:0', '--data-path', dataPath]);
    const webPorts = await sidecarPorts(web);
    const [outbound, webAdmin] = [webPorts.outbound[0]!, webPorts.admin!];
    await waitFor('web ready', async () => (await httpGet(webAdmin, '/ready')).status === 200, 30_000);

    // Steady traffic: four keep-alive clients, each sending its next request as soon as the last is answered.
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const served: Record<string, number> = {};
    const failures: string[] = [];
    let sent = 0;
    let running = true;
    const one = (): Promise<void> =>
      new Promise((resolve) => {
        sent++;
        const req = request({ host: '127.0.0.1', port: outbound, path: '/', agent }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => {
            if (res.statusCode === 200) served[body] = (served[body] ?? 0) + 1;
            else failures.push(`HTTP ${res.statusCode} ${body.trim()}`);
            resolve();
          });
          res.on('error', (e) => {
            failures.push(`response: ${e.message}`);
            resolve();
          });
        });
        req.on('error', (e: Error & { code?: string }) => {
          failures.push(`request: ${e.code ?? e.message}`);
          resolve();
        });
        req.end();
      });
    await waitFor('cart-a reachable through web', async () => {
      await one();
      return (served['cart-a'] ?? 0) > 0;
    }, 20_000);
    failures.length = 0;
    sent = 0;
    const loops = Array.from({ length: 4 }, async () => {
      while (running) await one();
    });

    const b = await cart('cart-b');
    await waitFor('web to list both instances', async () => {
      const dump = JSON.parse((await httpGet(webAdmin, '/config_dump')).body) as { endpoints: Record<string, { addresses: string[] }> };
      return (dump.endpoints['cart']?.addresses.length ?? 0) === 2;
    });
    // The client's keep-alive connections stay on cart-a (the outbound port is TCP): the drain moves them.
    const steady = sent;
    await waitFor('more traffic', () => sent > steady + 100, 20_000);
    const beforeDrain = sent;

    a.sidecar.kill('SIGTERM');
    expect(await exited(a.sidecar), 'cart-a drained and exited 0').to.equal(0);
    const atExit = { ...served };
    // Keep going a while on cart-b alone.
    await waitFor('traffic on cart-b after the drain', () => (served['cart-b'] ?? 0) > (atExit['cart-b'] ?? 0) + 100, 20_000);
    running = false;
    await Promise.all(loops);
    agent.destroy();

    expect(sent - beforeDrain, 'requests sent during and after the drain').to.be.greaterThan(100);
    expect(atExit['cart-a'] ?? 0, 'cart-a served until its drain').to.be.greaterThan(0);
    expect(failures, `${failures.length} of ${sent} requests failed`).to.deep.equal([]);
    expect(group.log(b.sidecar)).to.not.contain('"level":"error"');
  });
});
