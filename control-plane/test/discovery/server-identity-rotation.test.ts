/**
 * The control plane's own serving certificate: issued by its CA for the exact
 * control-plane SPIFFE ID, and replaced at half its lifetime without a
 * restart (new TLS connections see the new certificate).
 */
import { expect } from 'chai';
import { connect, type PeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import { silentLogger } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { loadCertificateAuthority } from '../../src/ca/certificate-authority';
import { startControlPlane, type RunningControlPlane } from '../../src/control-plane';
import { staticPolicySource } from '../../src/discovery/policy-source';

function servedCertificate(port: number, rootPem: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: rootPem, ALPNProtocols: ['h2'], servername: 'trellis-control-plane', checkServerIdentity: () => undefined }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve(c);
    });
    s.on('error', reject);
  });
}

describe('control-plane serving certificate', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let cp: RunningControlPlane | null = null;
  let closeCa: (() => void) | null = null;

  afterEach(async () => {
    await cp?.stop(100);
    cp = null;
    closeCa?.();
    tmp?.cleanup();
  });

  it('carries exactly the control-plane SPIFFE ID and is replaced at half its lifetime', async () => {
    tmp = makeTmpDir('trellis-cp-identity-');
    const caDir = join(tmp.dir, 'ca');
    await initCertificateAuthority(caDir, { trustDomain: 'example.org' });
    mkdirSync(join(tmp.dir, 'pol'));
    const ca = await loadCertificateAuthority(caDir);
    closeCa = () => ca.close();
    let now = Date.now();
    cp = await startControlPlane(
      { caDir, listen: '127.0.0.1:0', admin: '127.0.0.1:0', svidTtlSeconds: 3600, defaultMtlsMode: 'STRICT', signing: { concurrency: 2, maxQueue: 10 }, idleStreamTimeoutMs: 5000, debounceMs: 10, refreshMs: 50 },
      { authority: ca, policy: staticPolicySource('STRICT'), logger: silentLogger, nowMs: () => now },
    );
    const root = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const first = await servedCertificate(cp.discoveryPort, root);
    expect(first.subjectaltname).to.equal('URI:spiffe://example.org/ns/trellis-system/sa/trellis-control-plane');

    now += 1700_000; // not yet half of one hour
    await new Promise((r) => setTimeout(r, 200));
    expect((await servedCertificate(cp.discoveryPort, root)).serialNumber).to.equal(first.serialNumber);

    now += 200_000; // past half
    let next = first;
    for (let i = 0; i < 100 && next.serialNumber === first.serialNumber; i++) {
      await new Promise((r) => setTimeout(r, 50));
      next = await servedCertificate(cp.discoveryPort, root);
    }
    expect(next.serialNumber).to.not.equal(first.serialNumber);
    expect(next.subjectaltname).to.equal(first.subjectaltname);
  });
});
