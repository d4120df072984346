import { expect } from 'chai';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { TestCa } from '@trellis/testkit';
import { TRUST_BUNDLE_TYPE_URL, decodeResource, encodeResource, silentLogger } from '@trellis/shared';
import { dataPaths, Sidecar, SidecarError, SidecarState, sharedAuthorizer, silentAuthz, wireDiscovery, type DiscoverySource } from './helpers/harness';
import { makeFederatedTrustBundle } from '../src/state/sidecar-state';
import { credentialsFrom, startEchoApp, tcpExchange, tlsExchange } from './helpers/fixture';

const A = 'a.example';
const B = 'b.example';
const C = 'c.example';
const SERVER = `spiffe://${A}/ns/shop/sa/cart`;
const PARTNER = `spiffe://${B}/ns/partner/sa/client`;

async function refusals(sc: Sidecar, direction: string, reason: string): Promise<number> {
  return (await sc.metrics.refusals.get()).values.filter((v) => v.labels.reason === reason && v.labels.direction === direction).reduce((s, v) => s + v.value, 0);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as SidecarError).code;
  }
  return undefined;
}

for (const dataPath of dataPaths()) describe(`Federation in the sidecar (real TLS over loopback) [${dataPath}]`, function () {
  this.timeout(20_000);
  let caA: TestCa;
  let caB: TestCa;
  let caC: TestCa;
  let sidecar: Sidecar;
  let app: Awaited<ReturnType<typeof startEchoApp>>;
  let inPort: number;
  const servers: TlsServer[] = [];
  const sockets = new Set<{ destroy(): void }>();

  /** A TLS server outside the mesh holding `leaf`, trusting A's root for clients, answering "pong". */
  const partnerServer = async (leaf: Awaited<ReturnType<TestCa['issueLeaf']>>): Promise<number> => {
    const srv = createTlsServer({ key: leaf.key.keyPem, cert: leaf.chainPem, ca: caA.root.pem, requestCert: true, rejectUnauthorized: true }, (s) => {
      s.on('error', () => undefined);
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.end('pong');
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return (srv.address() as { port: number }).port;
  };

  before(async () => {
    [caA, caB, caC] = await Promise.all([TestCa.create(A), TestCa.create(B), TestCa.create(C)]);
    app = await startEchoApp();
    const partnerOk = await partnerServer(await caB.issueLeaf(`spiffe://${B}/ns/partner/sa/api`));
    // B's CA minting an identity of OUR trust domain: it must not vouch for it.
    const partnerImpostor = await partnerServer(await caB.issueLeaf(`spiffe://${A}/ns/shop/sa/api`));
    sidecar = new Sidecar(
      {
        inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }],
        outbound: [
          { host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${partnerOk}`, spiffeId: `spiffe://${B}/ns/partner/sa/api` } },
          { host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${partnerImpostor}`, spiffeId: `spiffe://${A}/ns/shop/sa/api` } },
        ],
        dataPath, workload: { namespace: 'shop', labels: { app: 'cart' } },
      },
      { logger: silentAuthz.logger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sidecar.state.update({
      credentials: await credentialsFrom(caA, SERVER),
      bundle: makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [caB.root.pem] }),
      peerAuth: { mode: 'STRICT', portModes: {} },
      authz: { policies: [] },
    });
    await sidecar.start();
    inPort = sidecar.inbound[0]!.port;
  });

  after(async () => {
    await sidecar.stop(0);
    await app.close();
    for (const s of sockets) s.destroy();
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  });

  it('Should accept a client of a federated trust domain whose chain reaches that trust domain\'s root', async () => {
    const r = await tlsExchange(inPort, { client: await caB.issueLeaf(PARTNER), ca: caA.root.pem, payload: 'ping' });
    expect(r.data).to.equal('echo:ping');
  });

  it('Should let a federated client reconnect with the session it saved (a resumed session shows no intermediates)', async () => {
    const leaf = await caB.issueLeaf(PARTNER);
    const once = (session?: Buffer): Promise<{ data: string; session?: Buffer; reused: boolean }> =>
      new Promise((resolve) => {
        let data = '';
        let saved: Buffer | undefined;
        const s = tlsConnect({ host: '127.0.0.1', port: inPort, key: leaf.key.keyPem, cert: leaf.chainPem, ca: caA.root.pem, session, checkServerIdentity: () => undefined });
        s.on('session', (x: Buffer) => (saved = x));
        s.on('secureConnect', () => s.end('ping'));
        s.on('data', (d: Buffer) => (data += String(d)));
        s.on('error', () => undefined);
        s.on('close', () => resolve({ data, session: saved, reused: s.isSessionReused() }));
      });
    const first = await once();
    expect(first.data).to.equal('echo:ping');
    // Whether the sidecar offers a session or not, offering back what we got must not get us refused.
    const second = await once(first.session);
    expect(second.data).to.equal('echo:ping');
  });

  it('Should still accept a client of our own trust domain', async () => {
    const r = await tlsExchange(inPort, { client: await caA.issueLeaf(`spiffe://${A}/ns/shop/sa/web`), ca: caA.root.pem, payload: 'ping' });
    expect(r.data).to.equal('echo:ping');
  });

  const crossSigned: Array<[string, () => Promise<TestCa>, string]> = [
    ['a federated CA issuing an identity of our trust domain', async () => caB, `spiffe://${A}/ns/shop/sa/web`],
    ['our CA issuing an identity of the federated trust domain', async () => caA, PARTNER],
  ];
  for (const [what, issuer, id] of crossSigned) {
    it(`Should refuse ${what} even though OpenSSL accepts the chain (reason untrusted_chain)`, async () => {
      const before = await refusals(sidecar, 'inbound', 'untrusted_chain');
      const r = await tlsExchange(inPort, { client: await (await issuer()).issueLeaf(id), ca: caA.root.pem, payload: 'ping' });
      expect(r.data).to.equal('');
      expect(await refusals(sidecar, 'inbound', 'untrusted_chain')).to.equal(before + 1);
    });
  }

  it('Should refuse a client of an unfederated trust domain whose root is nonetheless in the TLS trust list (reason foreign_trust_domain)', async () => {
    const fed = makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [caB.root.pem] });
    // C's root reaches the TLS layer's `ca` list, but no trust domain owns it.
    sidecar.state.update({ bundle: { ...fed, rootsPem: [...fed.rootsPem, caC.root.pem], fingerprints: [] } });
    try {
      const before = await refusals(sidecar, 'inbound', 'foreign_trust_domain');
      const r = await tlsExchange(inPort, { client: await caC.issueLeaf(`spiffe://${C}/ns/x/sa/y`), ca: caA.root.pem, payload: 'ping' });
      expect(r.data).to.equal('');
      expect(await refusals(sidecar, 'inbound', 'foreign_trust_domain')).to.equal(before + 1);
      // And C's CA cannot speak for B either.
      const r2 = await tlsExchange(inPort, { client: await caC.issueLeaf(PARTNER), ca: caA.root.pem, payload: 'ping' });
      expect(r2.data).to.equal('');
    } finally {
      sidecar.state.update({ bundle: makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [caB.root.pem] }) });
    }
  });

  it('Should refuse the federated client once the bundle no longer federates with its trust domain', async () => {
    sidecar.state.update({ bundle: makeFederatedTrustBundle(A, [caA.root.pem]) });
    try {
      const r = await tlsExchange(inPort, { client: await caB.issueLeaf(PARTNER), ca: caA.root.pem, payload: 'ping' });
      expect(r.data).to.equal('');
    } finally {
      sidecar.state.update({ bundle: makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [caB.root.pem] }) });
    }
  });

  it('Should connect outbound to a server of a federated trust domain named by ADDR#SPIFFE_ID', async () => {
    const r = await tcpExchange(sidecar.outbound[0]!.port, 'hi');
    expect(r.data).to.equal('pong');
  });

  it('Should refuse outbound a server whose certificate for our trust domain was issued by the federated CA', async () => {
    const before = await refusals(sidecar, 'outbound', 'untrusted_chain');
    const r = await tcpExchange(sidecar.outbound[1]!.port, 'hi');
    expect(r.data).to.equal('');
    expect(await refusals(sidecar, 'outbound', 'untrusted_chain')).to.equal(before + 1);
  });

  it('Should refuse a federated bundle that names our own trust domain, is empty, or holds a non-CA root (TRELLIS_SIDECAR_BAD_BUNDLE)', async () => {
    const leaf = await caB.issueLeaf(PARTNER);
    expect(codeOf(() => makeFederatedTrustBundle(A, [caA.root.pem], { [A]: [caB.root.pem] }))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(codeOf(() => makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [] }))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(codeOf(() => makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [leaf.pem] }))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(codeOf(() => makeFederatedTrustBundle(A, [caA.root.pem], { 'Not A Domain': [caB.root.pem] }))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(codeOf(() => makeFederatedTrustBundle(A, [caA.root.pem], { [B]: [caB.root.pem] }))).to.equal(undefined);
  });
});

describe('Federated roots from the discovery stream into the sidecar state', () => {
  let caA: TestCa;
  let caB: TestCa;
  before(async () => {
    [caA, caB] = await Promise.all([TestCa.create(A), TestCa.create(B)]);
  });

  /** Records the bundle handler the wiring registers, so a test can push a decoded resource through it. */
  const wired = (state: SidecarState): ((body: unknown) => unknown) => {
    let handler: ((r: ReadonlyArray<{ name: string; body: unknown }>, v: string) => unknown) | undefined;
    const source: DiscoverySource = {
      on: (typeUrl, h) => {
        if (typeUrl === TRUST_BUNDLE_TYPE_URL) handler = h as typeof handler;
        return undefined;
      },
      onConnectionChange: () => undefined,
    };
    wireDiscovery(source, state, { logger: silentLogger });
    return (body) => handler!([{ name: 'default', body: decodeResource(TRUST_BUNDLE_TYPE_URL, encodeResource(body)) }], 'v1');
  };

  it('Should keep our roots first and index every federated trust domain\'s roots by trust domain', () => {
    const state = new SidecarState();
    wired(state)({ trustDomain: A, rootsPem: [caA.root.pem], federatedRootsPem: { [B]: [caB.root.pem] } });
    const b = state.current().bundle!;
    expect(b.rootsPem).to.have.length(2);
    expect(b.rootsPem[0]).to.contain(caA.root.pem.split('\n')[1]!);
    expect([...b.byTrustDomain!.keys()]).to.deep.equal([A, B]);
    expect(b.byTrustDomain!.get(B)!.x509Authorities[0]!.subjectText).to.contain(B);
  });

  it('Should refuse (NACK) a federated entry naming our own trust domain or an empty one, keeping the previous bundle', () => {
    const state = new SidecarState();
    const push = wired(state);
    push({ trustDomain: A, rootsPem: [caA.root.pem], federatedRootsPem: { [B]: [caB.root.pem] } });
    const before = state.current().bundle;
    expect(codeOf(() => push({ trustDomain: A, rootsPem: [caA.root.pem], federatedRootsPem: { [A]: [caB.root.pem] } }))).to.equal('TRELLIS_PROTOCOL_BAD_RESOURCE');
    expect(codeOf(() => push({ trustDomain: A, rootsPem: [caA.root.pem], federatedRootsPem: { [B]: [] } }))).to.equal('TRELLIS_PROTOCOL_BAD_RESOURCE');
    expect(codeOf(() => push({ trustDomain: A, rootsPem: [caA.root.pem], federatedRootsPem: { [B]: ['not a certificate'] } }))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(state.current().bundle).to.equal(before);
  });
});
