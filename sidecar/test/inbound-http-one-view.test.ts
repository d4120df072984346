/**
 * Issue #13 §2: an /http port authorizes the request the application is
 * served, never another reading of the same bytes. Real sidecar inbound
 * listeners, real mTLS and PERMISSIVE plaintext, the real Istio-shaped
 * policy engine, exact attack bytes on raw sockets and from curl
 * --path-as-is, and a plain Node HTTP app that answers 200 to everything.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCa, type TestCert } from '@trellis/testkit';
import { dataPaths, policiesFromManifests, sharedAuthorizer, Sidecar, silentAuthz } from './helpers/harness';
import { bundleOf, credentialsFrom, runTool } from './helpers/fixture';
import { parseResponses, rawExchange, startNaiveHttpApp, startSwitchingApp, type SeenRequest, type WireResponse } from './helpers/http-wire';

const TD = 'cluster.local';
const SERVER_ID = `spiffe://${TD}/ns/default/sa/server`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;
const FORGED = `URI=spiffe://${TD}/ns/kube-system/sa/admin`;

/** DENY /admin (and below) and the host admin.internal; everything else is allowed. */
const POLICIES = [
  {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'deny-admin', namespace: 'default', creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }, { to: [{ operation: { hosts: ['admin.internal'] } }] }] },
  },
];

async function refusals(sc: Sidecar, reason: string): Promise<number> {
  const m = await sc.metrics.refusals.get();
  return m.values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

/** The issue's exact attack strings: each is /admin to an app that resolves dot segments and decodes. */
const ATTACKS = ['/./admin', '/x/../admin', '/%2e/admin', '/%61dmin', '/%2E%2e/admin', '/admin/./', '/public/.%2E/admin/', '/ADMIN/../%61dmin'];

/** Byte-correct: a content-length that matches the body; `connection: close` and the connection closed when `closes`. */
function expectByteCorrect(r: WireResponse, closes: boolean): void {
  expect(r.header('content-length'), `${r.statusLine} has a content-length`).to.be.a('string');
  expect(Buffer.byteLength(r.body, 'latin1')).to.equal(Number(r.header('content-length')));
  if (closes) expect(r.header('connection')).to.match(/^close$/i);
}

for (const dataPath of dataPaths()) describe(`HTTP requests are authorized on the view the app is served [${dataPath}]`, function () {
  this.timeout(30_000);
  let ca: TestCa;
  let sidecar: Sidecar;
  let client: TestCert & { chainPem: string };
  let strictApp: Awaited<ReturnType<typeof startNaiveHttpApp>>;
  let permissiveApp: Awaited<ReturnType<typeof startNaiveHttpApp>>;
  let switching: Awaited<ReturnType<typeof startSwitchingApp>>;
  let strictPort: number;
  let permissivePort: number;
  let switchingPort: number;
  let certDir: string;

  before(async () => {
    ca = await TestCa.create(TD);
    strictApp = await startNaiveHttpApp();
    permissiveApp = await startNaiveHttpApp();
    switching = await startSwitchingApp();
    sidecar = new Sidecar(
      {
        inbound: [
          { host: '127.0.0.1', port: 0, appPort: strictApp.port, http: true },
          { host: '127.0.0.1', port: 0, appPort: permissiveApp.port, http: true },
          { host: '127.0.0.1', port: 0, appPort: switching.port, http: true },
        ],
        outbound: [],
        dataPath,
        workload: { namespace: 'default', labels: { app: 'server' } },
        detectTimeoutMs: 200,
      },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false },
    );
    sidecar.state.update({
      credentials: await credentialsFrom(ca, SERVER_ID),
      bundle: bundleOf(ca),
      peerAuth: { mode: 'STRICT', portModes: { [permissiveApp.port]: 'PERMISSIVE' } },
      authz: { policies: policiesFromManifests(POLICIES) },
    });
    await sidecar.start();
    [strictPort, permissivePort, switchingPort] = sidecar.inbound.map((l) => l.port) as [number, number, number];
    client = await ca.issueLeaf(CLIENT_ID);
    certDir = mkdtempSync(join(tmpdir(), 'trellis-http-'));
    writeFileSync(join(certDir, 'client.pem'), client.chainPem, { mode: 0o600 });
    writeFileSync(join(certDir, 'client.key'), client.key.keyPem, { mode: 0o600 });
  });

  after(async () => {
    await sidecar.stop(0);
    await strictApp.close();
    await permissiveApp.close();
    await switching.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  const transports = (): Array<{ name: string; port: () => number; app: () => { seen: SeenRequest[] }; tls: boolean; xfcc: RegExp | undefined }> => [
    { name: 'mTLS', port: () => strictPort, app: () => strictApp, tls: true, xfcc: new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`) },
    { name: 'PERMISSIVE plaintext', port: () => permissivePort, app: () => permissiveApp, tls: false, xfcc: undefined },
  ];
  const send = (t: { port: () => number; tls: boolean }, bytes: string, quietMs?: number) => rawExchange(t.port(), bytes, { tls: t.tls ? { client, ca: ca.root.pem } : undefined, quietMs });

  for (const t of transports()) {
    describe(`over ${t.name}`, () => {
      it('Should authorize every request after an Upgrade the app answered with 200, and never hand the app a forged XFCC', async () => {
        const app = t.app();
        const from = app.seen.length;
        const r = await send(
          t,
          'GET /chat HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
            `GET /admin HTTP/1.1\r\nHost: server\r\nx-forwarded-client-cert: ${FORGED}\r\n\r\n` +
            `GET /next HTTP/1.1\r\nHost: server\r\nX-Forwarded-Client-Cert: ${FORGED}\r\nConnection: close\r\n\r\n`,
        );
        const responses = parseResponses(r.data);
        expect(responses.map((x) => x.status)).to.deep.equal([200, 403, 200]);
        expect(responses[0]!.body).to.equal('ok /chat');
        expect(responses[2]!.body).to.equal('ok /next');
        const seen = app.seen.slice(from);
        expect(seen.map((s) => s.url), 'the denied request never reached the app').to.deep.equal(['/chat', '/next']);
        for (const s of seen) {
          if (t.xfcc) expect(s.xfcc).to.match(t.xfcc);
          else expect(s.xfcc, 'no XFCC for a plaintext peer, never the forged one').to.equal(undefined);
        }
      });

      for (const attack of ATTACKS) {
        it(`Should deny GET ${attack} as the /admin the app would route it to`, async () => {
          const from = t.app().seen.length;
          const r = parseResponses((await send(t, `GET ${attack} HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n`)).data);
          expect(r.map((x) => x.status)).to.deep.equal([403]);
          expect(t.app().seen.slice(from)).to.deep.equal([]);
        });
      }

      it('Should deny the issue\'s attack strings sent by curl --path-as-is', async () => {
        const from = t.app().seen.length;
        for (const attack of ['/./admin', '/x/../admin', '/%2e/admin', '/%61dmin']) {
          const scheme = t.tls ? 'https' : 'http';
          const tlsArgs = t.tls ? ['-k', '--cert', join(certDir, 'client.pem'), '--key', join(certDir, 'client.key')] : [];
          const out = await runTool('curl', ['--path-as-is', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: server', ...tlsArgs, `${scheme}://127.0.0.1:${t.port()}${attack}`]);
          expect(out.stdout, `curl --path-as-is ${attack}`).to.equal('403');
        }
        expect(t.app().seen.slice(from)).to.deep.equal([]);
      });

      it('Should deny an absolute-form GET http://server/admin and serve absolute-form to the app as origin-form', async () => {
        const from = t.app().seen.length;
        const denied = parseResponses((await send(t, 'GET http://server/admin HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n')).data);
        expect(denied.map((x) => x.status)).to.deep.equal([403]);
        const ok = parseResponses((await send(t, 'GET http://Server.:80/ok?q=1 HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n')).data);
        expect(ok.map((x) => x.status)).to.deep.equal([200]);
        expect(t.app().seen.slice(from).map((s) => [s.url, s.host])).to.deep.equal([['/ok?q=1', 'server']]);
      });
    });
  }

  it('Should forward the normalized path, with the query exactly as sent', async () => {
    const from = strictApp.seen.length;
    const r = parseResponses((await send(transports()[0]!, 'GET /public/./a/../%62?x=%2e&y=/../admin HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n')).data);
    expect(r.map((x) => x.status)).to.deep.equal([200]);
    expect(strictApp.seen.slice(from).map((s) => s.url)).to.deep.equal(['/public/b?x=%2e&y=/../admin']);
  });

  it('Should normalize with the mesh-wide option it was pushed, and forward what it judged', async () => {
    const t = transports()[0]!;
    const policies = sidecar.state.current().authz!.policies;
    const get = async (target: string): Promise<[number, string | undefined]> => {
      const from = strictApp.seen.length;
      const r = parseResponses((await send(t, `GET ${target} HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n`)).data);
      return [r[0]!.status, strictApp.seen.slice(from)[0]?.url];
    };
    try {
      expect(sidecar.state.current().authz!.pathNormalization, 'BASE when nothing was pushed').to.equal('BASE');
      expect(await get('//admin')).to.deep.equal([200, '//admin']);
      expect(await get('/x%2F..%2Fadmin')).to.deep.equal([200, '/x%2F..%2Fadmin']);
      sidecar.state.update({ authz: { policies, pathNormalization: 'MERGE_SLASHES' } });
      expect(await get('//admin')).to.deep.equal([403, undefined]);
      expect(await get('/a//b/')).to.deep.equal([200, '/a/b/']);
      expect(await get('/x%2F..%2Fadmin')).to.deep.equal([200, '/x%2F..%2Fadmin']);
      sidecar.state.update({ authz: { policies, pathNormalization: 'DECODE_AND_MERGE_SLASHES' } });
      expect(await get('/x%2F..%2Fadmin')).to.deep.equal([403, undefined]);
      expect(await get('/x%5c..%5cadmin')).to.deep.equal([403, undefined]);
      expect(await get('/a%2Fb?c=%2F')).to.deep.equal([200, '/a/b?c=%2F']);
      sidecar.state.update({ authz: { policies, pathNormalization: 'NONE' } });
      expect(await get('/./admin'), 'NONE judges and forwards the path as sent').to.deep.equal([200, '/./admin']);
      expect(await get('/admin')).to.deep.equal([403, undefined]);
      expect((await get('/x\\..\\admin'))[0], 'a backslash cannot be left to the app under NONE').to.equal(400);
    } finally {
      sidecar.state.update({ authz: { policies } });
    }
  });

  it('Should match hosts without their port or trailing dot and in any letter case', async () => {
    const t = transports()[0]!;
    const from = strictApp.seen.length;
    for (const host of ['admin.internal', 'ADMIN.Internal', 'admin.internal.', 'Admin.Internal.:8080', 'admin.internal:443']) {
      const r = parseResponses((await send(t, `GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).data);
      expect(r.map((x) => x.status), `Host: ${host}`).to.deep.equal([403]);
    }
    const abs = parseResponses((await send(t, 'GET http://ADMIN.internal./x HTTP/1.1\r\nHost: admin.internal:80\r\nConnection: close\r\n\r\n')).data);
    expect(abs.map((x) => x.status)).to.deep.equal([403]);
    expect(strictApp.seen.slice(from)).to.deep.equal([]);
  });

  const badRequests: Array<[string, string, string]> = [
    ['a NUL escape', 'GET /a%00b HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_path'],
    ['an invalid escape', 'GET /a%zzb HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_path'],
    ['a truncated escape', 'GET /adm%6 HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_path'],
    ['a fragment in the target', 'GET /public#/../admin HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_path'],
    ['a raw space in the target', 'GET /a b HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_request'],
    ['a raw NUL byte in the target', 'GET /a\x00b HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_request'],
    ['an absolute-form target naming another host than Host', 'GET http://public.example/admin HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_host'],
    ['an absolute-form target with user info', 'GET http://user@server/x HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_host'],
    ['a Host that is not a host', 'GET /x HTTP/1.1\r\nHost: server/admin\r\n\r\n', 'bad_host'],
    ['an Upgrade request with a body', 'GET /chat HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 37\r\n\r\nGET /admin HTTP/1.1\r\nHost: server\r\n\r\n', 'bad_request'],
  ];
  for (const [what, bytes, reason] of badRequests) {
    it(`Should answer a byte-correct 400 and close the connection for ${what} (reason ${reason})`, async () => {
      const from = strictApp.seen.length;
      const before = await refusals(sidecar, reason);
      const reply = await send(transports()[0]!, bytes);
      const r = parseResponses(reply.data);
      expect(r.map((x) => x.statusLine)).to.deep.equal(['HTTP/1.1 400 Bad Request']);
      expectByteCorrect(r[0]!, true);
      expect(reply.closedByServer, 'the sidecar closed the connection').to.equal(true);
      expect(strictApp.seen.slice(from), 'the app never saw it').to.deep.equal([]);
      expect(await refusals(sidecar, reason)).to.equal(before + 1);
    });
  }

  it('Should switch to raw bytes only after the app answers 101, carrying the bytes sent with the request both ways', async () => {
    const reply = await rawExchange(
      switchingPort,
      'GET /chat HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-forwarded-client-cert: forged\r\n\r\nfirst-frame',
      {
        tls: { client, ca: ca.root.pem },
        quietMs: 1500,
        onData: (all, s) => {
          if (all.includes('raw:first-frame') && !all.includes('raw:second')) s.write('second');
        },
      },
    );
    const text = reply.data.toString('latin1');
    expect(text).to.match(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text).to.match(/\r\nX-App: switched\r\n/i);
    expect(text).to.contain('\r\n\r\nhello-after-101\n');
    expect(text).to.contain('raw:first-frame');
    expect(text).to.contain('raw:second');
    const seen = switching.seen.at(-1)!;
    expect(seen.url).to.equal('/chat');
    expect(seen.upgrade).to.equal('websocket');
    expect(seen.xfcc).to.match(new RegExp(`^By=${SERVER_ID};Hash=[0-9a-f]{64};URI=${CLIENT_ID}$`));
  });

  it('Should answer requests pipelined before an Upgrade first, in order', async () => {
    const from = strictApp.seen.length;
    const r = await send(
      transports()[0]!,
      'GET /zero HTTP/1.1\r\nHost: server\r\n\r\n' +
        'GET /first HTTP/1.1\r\nHost: server\r\n\r\n' +
        'GET /chat HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n' +
        'GET /admin HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n',
    );
    expect(parseResponses(r.data).map((x) => [x.status, x.body])).to.deep.equal([
      [200, 'ok /zero'],
      [200, 'ok /first'],
      [200, 'ok /chat'],
      [403, 'RBAC: access denied\n'],
    ]);
    // The two plain requests go to the app concurrently (over the pool); the Upgrade only after their answers.
    const seen = strictApp.seen.slice(from).map((s) => s.url);
    expect(seen.slice(0, 2)).to.have.members(['/zero', '/first']);
    expect(seen.slice(2)).to.deep.equal(['/chat']);
  });

  it('Should answer 403 to an Upgrade that policy denies and keep authorizing the connection after it', async () => {
    const from = permissiveApp.seen.length;
    const r = await send(
      transports()[1]!,
      `GET /admin HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /fine HTTP/1.1\r\nHost: server\r\nx-forwarded-client-cert: ${FORGED}\r\nConnection: close\r\n\r\n`,
    );
    const responses = parseResponses(r.data);
    expect(responses.map((x) => x.status)).to.deep.equal([403, 200]);
    expectByteCorrect(responses[0]!, false);
    expect(permissiveApp.seen.slice(from).map((s) => [s.url, s.xfcc])).to.deep.equal([['/fine', undefined]]);
  });

  it('Should drop an h2c upgrade offer and serve the request as HTTP/1.1, as Envoy does', async () => {
    const from = strictApp.seen.length;
    const r = await send(
      transports()[0]!,
      'GET /h2 HTTP/1.1\r\nHost: server\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\nGET /admin HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n',
    );
    expect(parseResponses(r.data).map((x) => x.status)).to.deep.equal([200, 403]);
    const seen = strictApp.seen.slice(from);
    expect(seen.map((s) => s.url)).to.deep.equal(['/h2']);
    expect(seen[0]!.upgrade).to.equal(undefined);
    expect(seen[0]!.rawHeaders.map((h) => h.toLowerCase())).to.not.include('http2-settings');
  });

  it('Should refuse an Upgrade to a protocol other than WebSocket with 403, as Istio does', async () => {
    const from = strictApp.seen.length;
    const before = await refusals(sidecar, 'upgrade_refused');
    const r = await send(transports()[0]!, 'GET /x HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: spdy/3.1\r\n\r\nGET /y HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n');
    const responses = parseResponses(r.data);
    expect(responses.map((x) => x.status)).to.deep.equal([403, 200]);
    expectByteCorrect(responses[0]!, false);
    expect(strictApp.seen.slice(from).map((s) => s.url)).to.deep.equal(['/y']);
    expect(await refusals(sidecar, 'upgrade_refused')).to.equal(before + 1);
  });
});

for (const dataPath of dataPaths()) describe(`The sidecar's own HTTP answers are framed exactly [${dataPath}]`, function () {
  this.timeout(20_000);

  it('Should answer a byte-correct 502 when the app is unreachable, and serve the next request on the same connection', async () => {
    const ca = await TestCa.create(TD);
    const dead = await startNaiveHttpApp();
    const appPort = dead.port;
    await dead.close();
    const sc = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], dataPath, workload: { namespace: 'default', labels: {} } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, SERVER_ID), bundle: bundleOf(ca), peerAuth: { mode: 'PERMISSIVE', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    try {
      const before = await refusals(sc, 'app_unreachable');
      const reply = await rawExchange(sc.inbound[0]!.port, 'GET /a HTTP/1.1\r\nHost: server\r\n\r\nGET /b HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n');
      const r = parseResponses(reply.data);
      expect(r.map((x) => x.status)).to.deep.equal([502, 502]);
      for (const x of r) expectByteCorrect(x, false);
      expect(await refusals(sc, 'app_unreachable')).to.equal(before + 2);
    } finally {
      await sc.stop(0);
    }
  });
});
