/**
 * Failing closed at our own certificate's expiry covers open connections,
 * not only new ones: a keep-alive connection must not carry traffic for
 * minutes on an identity that has expired (as a revocation already closes
 * the connections of a revoked peer).
 */
import { expect } from 'chai';
import { connect as netConnect, type Socket } from 'node:net';
import { TestCa } from '@trellis/testkit';
import { dataPaths, Sidecar, sharedAuthorizer, silentAuthz, type Credentials } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, tcpExchange } from './helpers/fixture';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
/** Our short certificate's life left: long enough to open the connections, short enough for the test. */
const SHORT_MS = 2000;

async function refusals(sc: Sidecar, reason: string): Promise<number> {
  return (await sc.metrics.refusals.get()).values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

/** A plaintext connection to `port` that answered one echo; resolves with it and a promise of its close. */
async function openEcho(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  const reply = new Promise<string>((r) => socket.once('data', (d: Buffer) => r(d.toString())));
  socket.write('first');
  expect(await reply).to.equal('echo:first');
  return { socket, closed };
}

/** True when `p` settles within `ms`. */
function within(p: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
}

for (const dataPath of dataPaths()) describe(`Our own certificate expiring [${dataPath}]`, function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Awaited<ReturnType<typeof startEchoApp>>;
  const started: Sidecar[] = [];

  before(async () => {
    ca = await TestCa.create(TD);
    app = await startEchoApp();
  });

  after(async () => {
    for (const s of started) await s.stop(0);
    await app.close();
  });

  /** A server sidecar (a STRICT TCP port) and a client sidecar (outbound to the STRICT one), with the given certificates. */
  async function pair(serverCreds: Credentials, clientCreds: Credentials): Promise<{ server: Sidecar; client: Sidecar }> {
    const server = new Sidecar(
      {
        inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }],
        outbound: [],
        dataPath,
        workload: { namespace: 'shop', labels: {} },
      },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    started.push(server);
    server.state.update({ credentials: serverCreds, bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await server.start();
    const client = new Sidecar(
      { inbound: [], outbound: [{ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${server.inbound[0]!.port}`, spiffeId: CART } }], dataPath, workload: { namespace: 'shop', labels: {} } },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    started.push(client);
    client.state.update({ credentials: clientCreds, bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await client.start();
    return { server, client };
  }

  it('Should close the open mTLS connections, inbound and outbound, when our certificate expires without a replacement, and refuse new ones', async () => {
    // Two pairs at once: in the first the server's certificate expires, in the second the client's.
    const [a, b] = await Promise.all([
      pair(await credentialsFrom(ca, CART, { notAfter: new Date(Date.now() + SHORT_MS) }), await credentialsFrom(ca, WEB)),
      pair(await credentialsFrom(ca, CART), await credentialsFrom(ca, WEB, { notAfter: new Date(Date.now() + SHORT_MS) })),
    ]);
    const [inbound, outbound] = await Promise.all([openEcho(a.client.outbound[0]!.port), openEcho(b.client.outbound[0]!.port)]);
    const [inboundClosed, outboundClosed] = await Promise.all([within(inbound.closed, SHORT_MS + 4000), within(outbound.closed, SHORT_MS + 4000)]);
    expect(inboundClosed, 'the server closes the open connection at its expiry').to.equal(true);
    expect(outboundClosed, 'the client closes the open connection at its expiry').to.equal(true);
    expect(await refusals(a.server, 'no_valid_svid'), 'counted as a refusal (inbound)').to.be.at.least(1);
    expect(await refusals(b.client, 'no_valid_svid'), 'counted as a refusal (outbound)').to.be.at.least(1);
    expect((await tcpExchange(a.client.outbound[0]!.port, 'late', 2000)).data, 'and a new connection is refused').to.equal('');
  });

  it('Should keep open connections when a new certificate replaced ours before it expired', async () => {
    const { server, client } = await pair(await credentialsFrom(ca, CART, { notAfter: new Date(Date.now() + SHORT_MS) }), await credentialsFrom(ca, WEB));
    const conn = await openEcho(client.outbound[0]!.port);
    server.state.update({ credentials: await credentialsFrom(ca, CART) });
    expect(await within(conn.closed, SHORT_MS + 1000), 'the connection stays open past the old certificate\'s expiry').to.equal(false);
    const reply = new Promise<string>((r) => conn.socket.once('data', (d: Buffer) => r(d.toString())));
    conn.socket.write('second');
    expect(await reply).to.equal('echo:second');
    conn.socket.destroy();
  });
});
