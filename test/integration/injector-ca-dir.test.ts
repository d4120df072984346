import { expect } from 'chai';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildWorkloadCsr, silentLogger } from '@trellis/shared';
import { initCertificateAuthority, loadCertificateAuthority, type CertificateAuthority } from '@trellis/control-plane';
import { IssuedCertSource, renewalDelayMs, type ServingPair } from '@trellis/injector-webhook';
import { injectorPort, makeTmpDir, openssl, trellisSpawn, trellisSync } from '@trellis/testkit';

describe('injector serving certificate from a Trellis CA dir', function () {
  this.timeout(30_000);
  const tmp = makeTmpDir('trellis-injector-ca-');
  const caDir = join(tmp.dir, 'ca');
  let ca: CertificateAuthority;

  before(async () => {
    await initCertificateAuthority(caDir, { trustDomain: 'mesh.test' });
    ca = await loadCertificateAuthority(caDir);
  });

  after(() => {
    ca?.close();
    tmp.cleanup();
  });

  it('builds a CSR that openssl verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const file = join(tmp.dir, 'req.der');
    writeFileSync(file, buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' })));
    const r = openssl(['req', '-inform', 'DER', '-in', file, '-noout', '-verify']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout + r.stderr).to.match(/verify OK/i);
  });

  it('renews at half the lifetime, and keeps serving the current pair when renewal fails', async () => {
    let now = new Date();
    const timers: Array<{ fn: () => void; ms: number }> = [];
    let fail = false;
    const src = await IssuedCertSource.start({
      issue: async (csr) => {
        if (fail) throw new Error('CA unavailable');
        return { chainPem: (await ca.issue({ csr, spiffeId: 'spiffe://mesh.test/ns/trellis-system/sa/trellis-injector', ttlSeconds: 3600, requester: 'test' })).chainPem };
      },
      logger: silentLogger,
      clock: () => now,
      setTimer: (fn, ms) => {
        timers.push({ fn, ms });
        return { cancel: () => undefined };
      },
      retryMs: 1234,
    });
    const first = src.current();
    expect(timers).to.have.length(1);
    expect(timers[0]!.ms).to.equal(renewalDelayMs(now, first.notBefore, first.notAfter));
    expect(timers[0]!.ms).to.be.within(1700_000, 1800_000);

    const seen: ServingPair[] = [];
    src.onChange((p) => seen.push(p));
    now = new Date(now.getTime() + timers[0]!.ms);
    fail = true;
    await src.renew();
    expect(src.current()).to.equal(first);
    expect(seen).to.have.length(0);
    expect(timers[1]!.ms).to.equal(1234);

    fail = false;
    await src.renew();
    expect(src.current().serial).to.not.equal(first.serial);
    expect(seen.map((p) => p.serial)).to.deep.equal([src.current().serial]);
    expect(src.current().keyPem).to.not.equal(first.keyPem, 'a fresh key for every certificate');
    src.close();
  });

  it('serves, from the real binary, a chain that openssl verifies against the CA root', async () => {
    // Port 0: it prints the port it bound (a port picked free here could be taken before it binds).
    const child = trellisSpawn(['injector', '--ca-dir', caDir, '--listen', '127.0.0.1:0']);
    try {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const port = await injectorPort(child).catch((e: Error) => {
        throw new Error(`${e.message}\n--- stderr ---\n${err}`);
      });
      // -verify_hostname: the API server checks the Service DNS name, not the SPIFFE ID.
      const r = openssl(['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(caDir, 'root.pem'), '-verify_hostname', 'trellis-injector.trellis-system.svc', '-verify_return_error', '-showcerts'], '');
      expect(r.stdout).to.include('Verify return code: 0 (ok)');
      const leafPem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)![0];
      expect(new X509Certificate(leafPem).subjectAltName).to.include('URI:spiffe://mesh.test/ns/trellis-system/sa/trellis-injector');
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('prints the CA root as the caBundle', () => {
    const r = trellisSync(['injector', 'ca-bundle', '--ca-dir', caDir]);
    expect(r.status, r.stderr).to.equal(0);
    expect(Buffer.from(r.stdout.trim(), 'base64').toString('utf8')).to.equal(readFileSync(join(caDir, 'root.pem'), 'utf8'));
  });
});
