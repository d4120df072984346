import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { controlPlanePorts, freePort, makeTmpDir, ProcessGroup, openssl, sidecarPorts, trellisSync, httpGet, waitFor } from '@trellis/testkit';

const get = (port: number, path: string) => httpGet(port, path);

const A = 'a.example';
const B = 'b.example';
const C = 'c.example';
const CART = `spiffe://${A}/ns/shop/sa/cart`;
const PARTNER = `spiffe://${B}/ns/partner/sa/client`;
const PARTNER_OTHER = `spiffe://${B}/ns/partner/sa/other`;
const STRANGER = `spiffe://${C}/ns/partner/sa/client`;
const PARTNER_API = `spiffe://${B}/ns/partner/sa/api`;

const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-from-partner, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["${B}/ns/partner/sa/client"]}}]
`;

/** HTTPS with a client SVID; the server is verified against A's root (no hostname: SVIDs carry a SPIFFE ID). */
function mtlsGet(port: number, client: { key: string; chain: string }, ca: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: '/hello', agent: false, timeout: 5000, key: client.key, cert: client.chain, ca, checkServerIdentity: () => undefined },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: Error & { code?: string }) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

describe('Federation end to end: trellis control-plane --federation and a trellis sidecar (real processes, real mTLS)', function () {
  this.timeout(90_000);
  const tmp = makeTmpDir('trellis-federation-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  let app: Server;
  let partnerServer: HttpsServer;
  let cp: ChildProcess;
  const port: Record<string, number> = {};
  const clients: Record<string, { key: string; chain: string }> = {};
  let rootA = '';

  const refusals = async (reason: string): Promise<number> => {
    const m = new RegExp(`^trellis_refusals_total\\{direction="inbound",reason="${reason}"\\} (\\S+)$`, 'm').exec((await get(port.cartAdmin!, '/stats')).body);
    return m ? Number(m[1]) : 0;
  };
  const rootCount = async (): Promise<number> => ((JSON.parse((await get(port.cartAdmin!, '/config_dump')).body) as { bundle: { fingerprints: string[] } | null }).bundle?.fingerprints.length ?? 0);
  /** A client SVID: key made by openssl, signed by `trellis ca sign` of the CA in `caDir`. */
  const svid = (caDir: string, spiffeId: string, name: string): { key: string; chain: string } => {
    const key = openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${name}.key`)]);
    expect(key.status, key.stderr).to.equal(0);
    const csr = openssl(['req', '-new', '-key', f(`${name}.key`), '-subj', '/O=partner', '-out', f(`${name}.csr`)]);
    expect(csr.status, csr.stderr).to.equal(0);
    const signed = trellisSync(['ca', 'sign', '--dir', f(caDir), '--csr', f(`${name}.csr`), '--spiffe-id', spiffeId, '--ttl', '1h']);
    expect(signed.status, signed.stderr).to.equal(0);
    return { key: readFileSync(f(`${name}.key`), 'utf8'), chain: signed.stdout };
  };

  before(async () => {
    // cart's inbound port is published by its join token, so it is picked before the start; the rest are bound from port 0.
    port.cartIn = await freePort();
    for (const [dir, td] of [['caA', A], ['caB', B], ['caC', C]] as const) {
      const init = trellisSync(['ca', 'init', '--dir', f(dir), '--trust-domain', td]);
      expect(init.status, init.stderr).to.equal(0);
    }
    rootA = readFileSync(f('caA/root.pem'), 'utf8');
    // B hands us its bundle as a SPIFFE bundle document, as `trellis bundle export` writes it.
    const exported = trellisSync(['bundle', 'export', '--ca-dir', f('caB'), '--out', f('b.bundle.json')]);
    expect(exported.status, exported.stderr).to.equal(0);
    writeFileSync(f('federation.yaml'), `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: b.bundle.json\n`);
    clients.partner = svid('caB', PARTNER, 'partner');
    clients.other = svid('caB', PARTNER_OTHER, 'other');
    clients.stranger = svid('caC', STRANGER, 'stranger');
    // The token attests what the cart sidecar announces (service, labels, its inbound listener).
    const t = trellisSync(['token', 'create', '--ca-dir', f('caA'), '--spiffe-id', CART, '--uses', '3', '--service', 'cart', '--labels', 'app=cart', '--ports', String(port.cartIn)]);
    expect(t.status, t.stderr).to.equal(0);
    writeFileSync(f('cart.token'), t.stdout.trim() + '\n', { mode: 0o600 });
    mkdirSync(f('policies'));
    writeFileSync(f('policies/shop.yaml'), POLICIES);
    app = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
    port.app = (app.address() as { port: number }).port;
    // A partner service outside our mesh: B's SVID, clients verified against OUR root (B federates with us too).
    const api = svid('caB', PARTNER_API, 'partner-api');
    partnerServer = createHttpsServer({ key: api.key, cert: api.chain, ca: rootA, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerX509Certificate();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`partner saw ${peer?.subjectAltName ?? 'nobody'}`);
    });
    await new Promise<void>((r) => partnerServer.listen(0, '127.0.0.1', () => r()));
    port.partner = (partnerServer.address() as { port: number }).port;

    cp = group.spawn(['control-plane', '--ca-dir', f('caA'), '--policy-dir', f('policies'), '--federation', f('federation.yaml'),
      '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    ({ listen: port.cp, admin: port.cpAdmin } = await controlPlanePorts(cp));
    const cart = group.spawn(['sidecar', '--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('caA/root.pem'), '--token-file', f('cart.token'),
      '--trust-domain', A, '--namespace', 'shop', '--service', 'cart', '--service-account', 'cart', '--labels', 'app=cart',
      '--inbound', `127.0.0.1:${port.cartIn}=${port.app}/http`, '--outbound', `0=127.0.0.1:${port.partner}#${PARTNER_API}`, '--admin', '127.0.0.1:0']);
    try {
      const bound = await sidecarPorts(cart);
      [port.cartOut, port.cartAdmin] = [bound.outbound[0]!, bound.admin!];
      await waitFor('the sidecar ready', async () => (await get(port.cartAdmin!, '/ready')).status === 200);
      await waitFor('the federated bundle at the sidecar', async () => (await rootCount()) === 2);
    } catch (err) {
      group.dumpLogs();
      throw err;
    }
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs();
  });

  after(async () => {
    group.killAll();
    if (app) await new Promise<void>((r) => app.close(() => r()));
    if (partnerServer) {
      partnerServer.closeAllConnections();
      await new Promise<void>((r) => partnerServer.close(() => r()));
    }
    tmp.cleanup();
  });

  it('Should accept a client holding an SVID of the federated trust domain when a policy names its principal, and pass its SPIFFE ID on', async () => {
    const r = await mtlsGet(port.cartIn!, clients.partner!, rootA);
    expect(r).to.have.property('status', 200);
    expect((JSON.parse((r as { body: string }).body) as { xfcc: string }).xfcc).to.match(new RegExp(`^By=${CART};Hash=[0-9a-f]{64};URI=${PARTNER}$`));
  });

  it('Should answer 403 to a federated client whose principal no policy allows', async () => {
    const r = await mtlsGet(port.cartIn!, clients.other!, rootA);
    expect(r).to.have.property('status', 403);
  });

  it('Should reach a server of the federated trust domain through an outbound ADDR#SPIFFE_ID, presenting our SVID', async () => {
    const r = await get(port.cartOut!, '/');
    expect(r.status).to.equal(200);
    expect(r.body).to.equal(`partner saw URI:${CART}`);
  });

  it('Should refuse a client of an unfederated trust domain at the handshake, and count it', async () => {
    const before = await refusals('untrusted_chain');
    const r = await mtlsGet(port.cartIn!, clients.stranger!, rootA);
    expect(r).to.have.property('error');
    // Counted by the sidecar process when it handles the failed handshake, read here over its admin port: wait for the count, then check it.
    await waitFor('the refusal to be counted', async () => (await refusals('untrusted_chain')) >= before + 1);
    expect(await refusals('untrusted_chain')).to.equal(before + 1);
  });

  it('Should keep the last good federated bundles when the federation config is broken', async () => {
    writeFileSync(f('federation.yaml'), `federatesWith:\n  - trustDomain: ${A}\n    bundleFile: b.bundle.json\n`);
    await waitFor('the control plane to refuse the edit', async () => group.log(cp).includes('TRELLIS_LIFECYCLE_BAD_FEDERATION'));
    expect(await rootCount()).to.equal(2);
    expect(await mtlsGet(port.cartIn!, clients.partner!, rootA)).to.have.property('status', 200);
  });

  it('Should refuse an unfederated client even once its root reaches the TLS trust list through a partner\'s bundle (reason foreign_trust_domain)', async () => {
    // B's bundle now (wrongly) carries C's root too: OpenSSL accepts C's chain, Trellis still refuses C's trust domain.
    writeFileSync(f('b-and-c.pem'), readFileSync(f('caB/root.pem'), 'utf8') + readFileSync(f('caC/root.pem'), 'utf8'));
    writeFileSync(f('federation.yaml'), `federatesWith:\n  - trustDomain: ${B}\n    bundleFile: b-and-c.pem\n`);
    await waitFor('three roots at the sidecar', async () => (await rootCount()) === 3);
    const before = await refusals('foreign_trust_domain');
    const r = await mtlsGet(port.cartIn!, clients.stranger!, rootA);
    expect(r).to.have.property('error');
    // Counted by the sidecar process when it handles the failed handshake, read here over its admin port: wait for the count, then check it.
    await waitFor('the refusal to be counted', async () => (await refusals('foreign_trust_domain')) >= before + 1);
    expect(await refusals('foreign_trust_domain')).to.equal(before + 1);
    expect(await mtlsGet(port.cartIn!, clients.partner!, rootA)).to.have.property('status', 200);
  });

  it('Should refuse the partner once the control plane no longer federates with its trust domain', async () => {
    writeFileSync(f('federation.yaml'), 'federatesWith: []\n');
    await waitFor('our root alone at the sidecar', async () => (await rootCount()) === 1);
    expect(await mtlsGet(port.cartIn!, clients.partner!, rootA)).to.have.property('error');
  });
});
