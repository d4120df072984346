import { expect } from 'chai';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, policiesFromJSON, silentLogger, type AuthorizationPolicy } from '@trellis/shared';
import { Sidecar, makeCredentials, makeTrustBundle, policiesFromWire, sharedAuthorizer } from '@trellis/sidecar';
import { TestCa } from '@trellis/testkit';

const TD = 'cluster.local';
const CHAT = `spiffe://${TD}/ns/shop/sa/chat`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

describe('WebSocket through an /http inbound port (real ws client and server, real mTLS)', function () {
  this.timeout(20_000);
  let ca: TestCa;
  let app: Server;
  let sidecar: Sidecar;
  let upgradeHeaders: IncomingMessage['headers'] | undefined;

  before(async () => {
    ca = await TestCa.create(TD);
    app = createServer();
    const wss = new WebSocketServer({ server: app });
    wss.on('connection', (ws, req) => {
      upgradeHeaders = req.headers;
      ws.on('message', (m) => ws.send(`echo:${String(m)}`));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as { port: number }).port;
    sidecar = new Sidecar(
      { inbound: [{ host: '127.0.0.1', port: 0, appPort, http: true }], outbound: [], workload: { namespace: 'shop', labels: { app: 'chat' } } },
      { logger: silentLogger, authorize: sharedAuthorizer({ trustDomain: () => TD }), processMetrics: false },
    );
    const leaf = await ca.issueLeaf(CHAT);
    sidecar.state.update({
      credentials: makeCredentials(leaf.key.keyPem, leaf.chainPem),
      bundle: makeTrustBundle(ca.root.pem),
      peerAuth: { mode: 'STRICT', portModes: {} },
      authz: {
        // Validated and compiled as the control plane does, then decoded by the sidecar's decoder.
        policies: policiesFromWire({
          wireVersion: AUTHZ_WIRE_VERSION,
          policies: encodeAuthorizationPolicies(
            policiesFromJSON([
              {
                apiVersion: 'security.istio.io/v1',
                kind: 'AuthorizationPolicy',
                metadata: { name: 'chat', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
                spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: [`${TD}/ns/shop/sa/web`] } }], to: [{ operation: { paths: ['/ws'] } }] }] },
              },
            ]) as AuthorizationPolicy[],
          ),
        }),
      },
    });
    await sidecar.start();
  });

  after(async () => {
    await sidecar.stop(0);
    app.close();
  });

  const open = async (path: string): Promise<{ ws?: WebSocket; status?: number }> => {
    const client = await ca.issueLeaf(WEB);
    return new Promise((resolve) => {
      const ws = new WebSocket(`wss://127.0.0.1:${sidecar.inbound[0]!.port}${path}`, {
        ca: ca.root.pem,
        cert: client.chainPem,
        key: client.key.keyPem,
        // The server is an SVID: no hostname to check (ws types this hook as boolean, Node wants undefined for success).
        checkServerIdentity: (() => undefined) as unknown as () => boolean,
        headers: { 'x-forwarded-client-cert': 'URI=spiffe://evil/ns/x/sa/y' },
      });
      ws.once('open', () => resolve({ ws }));
      ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
      ws.once('error', () => resolve({}));
    });
  };

  it('Should carry an allowed WebSocket both ways and hand the app our XFCC, not the client\'s', async () => {
    const { ws } = await open('/ws');
    expect(ws).to.not.equal(undefined);
    const reply = new Promise<string>((r) => ws!.once('message', (m) => r(String(m))));
    ws!.send('hello');
    expect(await reply).to.equal('echo:hello');
    expect(upgradeHeaders!['x-forwarded-client-cert']).to.match(new RegExp(`^By=${CHAT};Hash=[0-9a-f]{64};URI=${WEB}$`));
    ws!.close();
  });

  it('Should answer 403 to an Upgrade the AuthorizationPolicy does not allow', async () => {
    expect((await open('/admin-ws')).status).to.equal(403);
  });
});
