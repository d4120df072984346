import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import { connect as netConnect } from 'node:net';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { TestCa, waitFor } from '@trellis/testkit';
import { dataPaths, Sidecar, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, tcpExchange, tlsExchange } from './helpers/fixture';

const TD = 'cluster.local';

for (const dataPath of dataPaths()) describe(`Bad input on the data path never takes the sidecar down [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Server;
  let sc: Sidecar;
  let httpPort: number;
  let tcpPort: number;

  before(async () => {
    ca = await TestCa.create(TD);
    // An app that reads slowly and sometimes resets mid-response.
    app = createServer((req, res) => {
      if (req.url === '/reset') {
        res.writeHead(200, { 'content-length': 1000 });
        res.write('partial');
        setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as { port: number }).port;
    sc = new Sidecar(
      {
        inbound: [
          { host: '127.0.0.1', port: 0, appPort, http: true },
          { host: '127.0.0.1', port: 0, appPort: appPort + 0, http: false },
        ],
        outbound: [],
        dataPath, workload: { namespace: 'shop', labels: {} },
      },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, `spiffe://${TD}/ns/shop/sa/cart`), bundle: bundleOf(ca), peerAuth: { mode: 'PERMISSIVE', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    [httpPort, tcpPort] = sc.inbound.map((l) => l.port) as [number, number];
  });

  after(async () => {
    await sc.stop(0);
    app.close();
  });

  it('Should survive garbage, a truncated TLS record, aborted uploads and mid-response resets, and keep serving', async () => {
    await tcpExchange(httpPort, 'NOT HTTP AT ALL\r\n\r\n', 1000);
    await tcpExchange(tcpPort, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01]).toString('latin1'), 500);
    // An upload that stops half-way and disconnects.
    await new Promise<void>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port: httpPort }, () => {
        s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(5000));
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 50);
      });
      s.on('error', () => resolve());
    });
    await tcpExchange(httpPort, 'GET /reset HTTP/1.1\r\nHost: x\r\n\r\n', 1000);
    await new Promise((r) => setTimeout(r, 100));
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const r = await tlsExchange(httpPort, { client, ca: ca.root.pem, payload: 'GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' });
    expect(r.data).to.match(/^HTTP\/1\.1 200/);
    expect(r.data).to.match(/ok$/);
  });
});

for (const dataPath of dataPaths()) describe(`A sidecar out of file descriptors [${dataPath}]`, function () {
  this.timeout(45_000);

  it('Should survive a flood of idle connections past its descriptor limit, then serve mTLS again', async () => {
    const ca = await TestCa.create(TD);
    const server = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/cart`);
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/web`);
    const echo = await startEchoApp();
    // A real process with a real limit: 64 descriptors, of which node itself uses ~25.
    const child = spawn('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${join(__dirname, 'helpers', 'sidecar-process.js')}"`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    let exited: number | null | undefined;
    child.on('exit', (code) => (exited = code));
    const flood: Socket[] = [];
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += String(d);
          if (out.includes('\n')) resolve((JSON.parse(out) as { port: number }).port);
        });
        child.on('exit', (code) => reject(new Error(`sidecar exited with ${code}: ${stderr}`)));
        child.stdin!.end(JSON.stringify({ keyPem: server.key.keyPem, chainPem: server.chainPem, rootPem: ca.root.pem, appPort: echo.port, dataPath }));
      });
      // Idle peers that never start a handshake, well past the limit.
      for (let i = 0; i < 150; i++) {
        const s = netConnect({ host: '127.0.0.1', port });
        s.on('error', () => undefined);
        flood.push(s);
      }
      await new Promise((r) => setTimeout(r, 1500));
      expect(exited, `the sidecar exited: ${stderr}`).to.equal(undefined);
      for (const s of flood) s.destroy();
      // Descriptors come back as the refused and timed-out connections close.
      await waitFor('an mTLS exchange through the sidecar after the flood', async () => {
        const r = await tlsExchange(port, { client, ca: ca.root.pem, payload: 'after the flood', timeoutMs: 2000 });
        return r.data === 'echo:after the flood';
      }, 30_000);
      expect(exited).to.equal(undefined);
    } finally {
      for (const s of flood) s.destroy();
      child.kill('SIGKILL');
      await echo.close();
    }
  });
});
