import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { TestCa, makeTmpDir } from '@trellis/testkit';
import { silentLogger } from '@trellis/shared';
import { parseSidecarConfig, runSidecar, type DiscoveryRuntime, type DiscoveryRuntimeOptions } from './helpers/harness';

/** A discovery client that never connects; it only keeps the options the runner built. */
function fakeDiscovery(seen: { opts?: DiscoveryRuntimeOptions; started: boolean; stopped: boolean }): (o: DiscoveryRuntimeOptions) => DiscoveryRuntime {
  return (opts) => {
    seen.opts = opts;
    return {
      on: () => undefined,
      onConnectionChange: () => undefined,
      start: () => void (seen.started = true),
      stop: () => void (seen.stopped = true),
      requestSvid: () => new Promise(() => undefined),
      syncState: () => ({}),
      connection: () => ({ connected: false }),
    };
  };
}

describe('runSidecar wiring', function () {
  this.timeout(20_000);
  const tmp = makeTmpDir('trellis-run-sidecar-');
  after(() => tmp.cleanup());

  it('Should re-read the token file at each use, describe the node, and stop cleanly on the stop signal', async () => {
    const ca = await TestCa.create('cluster.local');
    writeFileSync(join(tmp.dir, 'ca.pem'), ca.root.pem);
    writeFileSync(join(tmp.dir, 'token'), 'first-token\n');
    const config = parseSidecarConfig({
      flags: { 'control-plane': ['127.0.0.1:1'], 'ca-bundle': join(tmp.dir, 'ca.pem'), 'token-file': join(tmp.dir, 'token'), namespace: 'shop', service: 'cart', 'service-account': 'cart', labels: ['app=cart'], inbound: ['127.0.0.1:0=8080/http'] },
      env: { TRELLIS_POD_IP: '10.1.2.3' },
    });
    const seen: { opts?: DiscoveryRuntimeOptions; started: boolean; stopped: boolean } = { started: false, stopped: false };
    const stop = new AbortController();
    const running = runSidecar(config, { logger: silentLogger, stopSignal: stop.signal, createDiscovery: fakeDiscovery(seen) });
    while (!seen.started) await new Promise((r) => setTimeout(r, 10));
    expect(await seen.opts!.getToken()).to.equal('first-token');
    writeFileSync(join(tmp.dir, 'token'), 'rotated-by-kubelet\n');
    expect(await seen.opts!.getToken()).to.equal('rotated-by-kubelet');
    expect(seen.opts!.node).to.deep.include({ spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart', namespace: 'shop', service: 'cart', address: '10.1.2.3' });
    expect(seen.opts!.node.labels).to.deep.equal({ app: 'cart' });
    // The inbound listener was configured on port 0: the node announces the port it bound, which peers can dial.
    const [announced] = seen.opts!.node.inboundPorts;
    expect(announced).to.be.above(0);
    expect(seen.opts!.node.inboundPorts).to.have.length(1);
    await new Promise<void>((resolve, reject) => {
      const s = connect(announced!, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
    expect(seen.opts!.controlPlaneSpiffeId).to.equal('spiffe://cluster.local/ns/trellis-system/sa/trellis-control-plane');
    expect(seen.opts!.bootstrapBundlePem).to.equal(ca.root.pem);
    expect(seen.opts!.getCredentials()).to.equal(null);
    stop.abort();
    await running;
    expect(seen.stopped).to.equal(true);
  });

  it('Should refuse to start with a CA bundle file that holds no certificate, naming the file', async () => {
    writeFileSync(join(tmp.dir, 'empty.pem'), 'nothing here\n');
    const config = parseSidecarConfig({
      flags: { 'control-plane': ['127.0.0.1:1'], 'ca-bundle': join(tmp.dir, 'empty.pem'), 'token-file': join(tmp.dir, 'token'), namespace: 'shop', service: 'cart' },
      env: {},
    });
    let err: { code?: string; message?: string } | undefined;
    try {
      await runSidecar(config, { logger: silentLogger, stopSignal: new AbortController().signal, createDiscovery: fakeDiscovery({ started: false, stopped: false }) });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).to.equal('TRELLIS_SIDECAR_BAD_CONFIG');
    expect(err?.message).to.contain('empty.pem');
  });
});
