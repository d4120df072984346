/**
 * One rule on both data paths when the TLS contexts for new material cannot
 * be built: the previous contexts (and the roots they trust) are dropped and
 * every connection is refused, never served with a root just removed.
 *
 * A bundle that passed validation does not make OpenSSL fail on its own, so
 * the failure is injected through the sidecar's context factory; the TLS
 * around it (handshakes, chains, the sidecar's listeners) is real.
 */
import { expect } from 'chai';
import { createSecureContext, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { silentLogger, type Logger } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { dataPaths, Sidecar, makeTrustBundle, sharedAuthorizer, type TlsContextFactory } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, tcpExchange, tlsExchange } from './helpers/fixture';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;
const WEB = `spiffe://${TD}/ns/shop/sa/web`;

async function refusals(sc: Sidecar, reason: string): Promise<number> {
  return (await sc.metrics.refusals.get()).values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);
}

for (const dataPath of dataPaths()) describe(`A TLS context that cannot be rebuilt [${dataPath}]`, function () {
  this.timeout(30_000);

  it('Should drop the old roots and refuse every connection, inbound and outbound, until an update builds', async () => {
    const oldCa = await TestCa.create(TD);
    const newCa = await TestCa.create(TD);
    const app = await startEchoApp();
    // An upstream server whose chain ends in the root about to be removed.
    const upstreamCert = await oldCa.issueLeaf(CART);
    const upstream: TlsServer = createTlsServer({ key: upstreamCert.key.keyPem, cert: upstreamCert.chainPem }, (s) => {
      s.on('error', () => s.destroy());
      s.on('data', (d: Buffer) => s.end(`up:${d.toString()}`));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    const upstreamPort = (upstream.address() as { port: number }).port;

    let failing = false;
    const refuseWhileFailing = (): void => {
      if (failing) throw new Error('simulated: OpenSSL refused the new context');
    };
    const factory: TlsContextFactory = {
      node: (opts) => {
        refuseWhileFailing();
        return createSecureContext(opts);
      },
      native: (relay, opts) => {
        refuseWhileFailing();
        return relay.context(opts);
      },
    };
    const errors: string[] = [];
    const logger: Logger = { ...silentLogger, error: (msg: string) => void errors.push(msg), child: () => logger };
    const sc = new Sidecar(
      {
        inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }],
        outbound: [{ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${upstreamPort}`, spiffeId: CART } }],
        dataPath,
        workload: { namespace: 'shop', labels: {} },
      },
      { logger, authorize: sharedAuthorizer(), processMetrics: false, tlsFactory: factory },
    );
    sc.state.update({
      credentials: await credentialsFrom(newCa, WEB),
      bundle: makeTrustBundle([oldCa.root.pem, newCa.root.pem]),
      peerAuth: { mode: 'STRICT', portModes: {} },
      authz: { policies: [] },
    });
    await sc.start();
    try {
      const inPort = sc.inbound[0]!.port;
      const outPort = sc.outbound[0]!.port;
      const fromOld = await oldCa.issueLeaf(`spiffe://${TD}/ns/shop/sa/old-client`);
      const fromNew = await newCa.issueLeaf(`spiffe://${TD}/ns/shop/sa/new-client`);
      const ca = [oldCa.root.pem, newCa.root.pem];
      // Both roots trusted: a client and an upstream of the old root get through.
      expect((await tlsExchange(inPort, { client: fromOld, ca, payload: 'a' })).data).to.equal('echo:a');
      expect((await tcpExchange(outPort, 'b')).data).to.equal('up:b');

      // The old root is removed, and the contexts for the new bundle cannot be built.
      failing = true;
      sc.state.update({ bundle: bundleOf(newCa) });
      expect((await tlsExchange(inPort, { client: fromOld, ca, payload: 'c' })).data, 'a client of the removed root').to.equal('');
      expect((await tlsExchange(inPort, { client: fromNew, ca, payload: 'd' })).data, 'no context: nobody is served').to.equal('');
      expect((await tcpExchange(outPort, 'e')).data, 'an upstream of the removed root').to.equal('');
      expect(await refusals(sc, 'no_tls_context')).to.equal(3);
      expect(errors.filter((m) => /cannot build TLS contexts/.test(m)), 'logged once, not per connection').to.have.length(1);
      expect(sc.readiness()).to.deep.include({ ready: false });
      expect(sc.readiness().reason).to.contain('no TLS context');

      // The next update builds: the new root only.
      failing = false;
      sc.state.update({ bundle: bundleOf(newCa) });
      expect(sc.readiness().ready).to.equal(true);
      expect((await tlsExchange(inPort, { client: fromNew, ca, payload: 'f' })).data).to.equal('echo:f');
      expect((await tlsExchange(inPort, { client: fromOld, ca, payload: 'g' })).data).to.equal('');
      expect((await tcpExchange(outPort, 'h')).data).to.equal('');
    } finally {
      await sc.stop(0);
      await app.close();
      upstream.close();
    }
  });
});
