import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCa, makeTmpDir } from '@trellis/testkit';
import { createLogger } from '@trellis/shared';
import { dataPaths, Sidecar, makeCredentials, policiesFromManifests, sharedAuthorizer, silentAuthz } from './helpers/harness';
import { bundleOf, runTool, startEchoApp, startHttpApp } from './helpers/fixture';

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/shop/sa/cart`;
const CLIENT_ID = `spiffe://${TD}/ns/shop/sa/web`;
const HOST = 'cart.shop.svc';

/** An Istio AuthorizationPolicy as the control plane pushes it (manifest JSON). */
const ALLOW_WEB_HELLO = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'web-may-say-hello', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
  spec: {
    action: 'ALLOW',
    rules: [{ from: [{ source: { principals: [`${TD}/ns/shop/sa/web`] } }], to: [{ operation: { methods: ['GET'], paths: ['/hello*'] } }] }],
  },
};

function curl(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return runTool('curl', ['-sS', '--max-time', '10', ...args]);
}

/** s_client keeps the connection after stdin ends (-quiet implies -ign_eof): stop it once the echo is back, or after 5 s. */
function openssl(args: string[], input: string): Promise<{ status: number; stdout: string; stderr: string }> {
  return runTool('openssl', args, input, 5000, /echo:ping/);
}

for (const dataPath of dataPaths()) describe(`Independent clients of an inbound listener (curl, openssl s_client) [${dataPath}]`, function () {
  this.timeout(30_000);
  let sidecar: Sidecar;
  let tmp: ReturnType<typeof makeTmpDir>;
  const apps: Array<{ close(): Promise<void> }> = [];
  let httpPort: number;
  let tcpPort: number;
  const f = (name: string): string => join(tmp.dir, name);

  before(async () => {
    tmp = makeTmpDir('trellis-sidecar-clients-');
    const ca = await TestCa.create(TD);
    const httpApp = await startHttpApp();
    const echo = await startEchoApp();
    apps.push(httpApp, echo);
    sidecar = new Sidecar(
      {
        inbound: [
          { host: '127.0.0.1', port: 0, appPort: httpApp.port, http: true },
          { host: '127.0.0.1', port: 0, appPort: echo.port, http: false },
        ],
        outbound: [],
        dataPath, workload: { namespace: 'shop', labels: { app: 'cart' } },
      },
      { logger: process.env.H5_DEBUG ? createLogger({ component: 'test', sink: process.stderr, level: 'debug' }) : silentAuthz.logger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false },
    );
    // A DNS SAN next to the SPIFFE ID lets curl verify the server fully (chain and name).
    const serverLeaf = await ca.issueLeaf(SERVER_ID, { dnsNames: [HOST] });
    sidecar.state.update({
      credentials: makeCredentials(serverLeaf.key.keyPem, serverLeaf.chainPem),
      bundle: bundleOf(ca),
      peerAuth: { mode: 'STRICT', portModes: {} },
      authz: { policies: policiesFromManifests([ALLOW_WEB_HELLO]) },
    });
    await sidecar.start();
    [httpPort, tcpPort] = sidecar.inbound.map((l) => l.port) as [number, number];
    const web = await ca.issueLeaf(CLIENT_ID);
    const other = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/batch`);
    const foreign = await (await TestCa.create(TD)).issueLeaf(CLIENT_ID);
    writeFileSync(f('root.pem'), ca.root.pem);
    for (const [name, leaf] of [['web', web], ['batch', other], ['foreign', foreign]] as const) {
      writeFileSync(f(`${name}.pem`), leaf.chainPem);
      writeFileSync(f(`${name}.key`), leaf.key.keyPem, { mode: 0o600 });
    }
  });

  after(async () => {
    await sidecar.stop(0);
    for (const a of apps) await a.close();
    tmp.cleanup();
  });

  const url = (path: string): string[] => ['--resolve', `${HOST}:${httpPort}:127.0.0.1`, `https://${HOST}:${httpPort}${path}`];

  it('Should serve curl with a valid client certificate on an allowed path, with our XFCC header', async () => {
    const r = await curl(['--cert', f('web.pem'), '--key', f('web.key'), '--cacert', f('root.pem'), '-H', 'x-forwarded-client-cert: URI=spiffe://evil/ns/x/sa/y', '-w', '\\n%{http_code}', ...url('/hello')]);
    expect(r.status, r.stderr).to.equal(0);
    const [body, code] = r.stdout.split('\n');
    expect(code).to.equal('200');
    const json = JSON.parse(body!) as { xfcc: string };
    expect(json.xfcc).to.match(new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`));
  });

  it('Should keep curl on one connection across an allowed request, a denied one and a chunked upload, judging each', async () => {
    writeFileSync(f('upload.bin'), Buffer.alloc(100_000, 'u'));
    const tls = ['--cert', f('web.pem'), '--key', f('web.key'), '--cacert', f('root.pem')];
    const r = await curl([
      ...tls, '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', ...url('/hello'),
      '--next', ...tls, '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', ...url('/admin'),
      '--next', ...tls, '-X', 'GET', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${f('upload.bin')}`, '-o', f('upload.out'), '-w', '%{http_code} %{num_connects}\\n', ...url('/hello/upload'),
    ]);
    expect(r.status, r.stderr).to.equal(0);
    // One TLS connection for all three (num_connects 0 on reuse), each request judged on its own.
    expect(r.stdout.trim().split('\n')).to.deep.equal(['200 1', '403 0', '200 0']);
    const echoed = JSON.parse(readFileSync(f('upload.out'), 'utf8')) as { path: string; body: string; xfcc: string };
    expect(echoed.path).to.equal('/hello/upload');
    expect(echoed.body.length).to.equal(100_000);
    expect(echoed.xfcc).to.match(new RegExp(`URI=${CLIENT_ID}$`));
  });

  it('Should answer curl 403 on a path the ALLOW policy does not cover', async () => {
    const r = await curl(['--cert', f('web.pem'), '--key', f('web.key'), '--cacert', f('root.pem'), '-o', '/dev/null', '-w', '%{http_code}', ...url('/admin')]);
    expect(r.stdout).to.equal('403');
  });

  it('Should answer curl 403 for an identity the policy does not name', async () => {
    const r = await curl(['--cert', f('batch.pem'), '--key', f('batch.key'), '--cacert', f('root.pem'), '-o', '/dev/null', '-w', '%{http_code}', ...url('/hello')]);
    expect(r.stdout).to.equal('403');
  });

  it('Should refuse curl without a client certificate or with one from another CA', async () => {
    expect((await curl(['--cacert', f('root.pem'), ...url('/hello')])).status).to.not.equal(0);
    expect((await curl(['--cert', f('foreign.pem'), '--key', f('foreign.key'), '--cacert', f('root.pem'), ...url('/hello')])).status).to.not.equal(0);
  });

  it('Should let openssl s_client verify our chain and complete mTLS on a TCP port (a DENY-free TCP port still needs an ALLOW match)', async () => {
    const denied = async (): Promise<number> => (await sidecar.metrics.refusals.get()).values.find((v) => v.labels.reason === 'authz_denied')?.value ?? 0;
    const before = await denied();
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${tcpPort}`, '-cert', f('web.pem'), '-cert_chain', f('web.pem'), '-key', f('web.key'), '-CAfile', f('root.pem'), '-verify_return_error', '-brief'], 'ping\n');
    expect(r.stderr).to.match(/Verification: OK/);
    expect(r.stderr).to.match(/Protocol version: TLSv1\.3/);
    // The ALLOW policy only has HTTP rules; on a TCP port they cannot match, so the connection is refused (fail closed).
    expect(r.stdout).to.not.contain('echo:ping');
    expect(await denied()).to.equal(before + 1);
  });

  it('Should forward openssl s_client traffic once a policy allows the TCP port', async () => {
    const allowTcp = { ...ALLOW_WEB_HELLO, metadata: { ...ALLOW_WEB_HELLO.metadata, name: 'web-tcp' }, spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: [`${TD}/ns/shop/sa/web`] } }] }] } };
    const prev = sidecar.state.current().authz!;
    sidecar.state.update({ authz: { policies: policiesFromManifests([ALLOW_WEB_HELLO, allowTcp]) } });
    try {
      const r = await openssl(['s_client', '-connect', `127.0.0.1:${tcpPort}`, '-cert', f('web.pem'), '-cert_chain', f('web.pem'), '-key', f('web.key'), '-CAfile', f('root.pem'), '-verify_return_error', '-quiet'], 'ping\n');
      expect(r.stdout).to.contain('echo:ping');
      const noCert = await openssl(['s_client', '-connect', `127.0.0.1:${tcpPort}`, '-CAfile', f('root.pem'), '-quiet'], 'ping\n');
      expect(noCert.stdout).to.not.contain('echo:ping');
    } finally {
      sidecar.state.update({ authz: prev });
    }
  });
});
