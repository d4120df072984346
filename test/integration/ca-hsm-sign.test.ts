/**
 * `trellis ca sign` on a CA dir whose intermediate key lives in an HSM
 * (SoftHSM2 here): the key is generated in the token, an enterprise root run
 * with openssl signs the intermediate, and issued SVIDs verify with openssl
 * while no key file ever exists in the CA dir.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeWith, makeTmpDir, openssl, SOFTHSM, SOFTHSM_MODULE, trellisSync } from '@trellis/testkit';

const MODULE = SOFTHSM_MODULE;

function ok(r: { status: number; stdout: string; stderr: string }): string {
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout;
}

describeWith(SOFTHSM, 'trellis ca sign with the intermediate key in an HSM (SoftHSM2, real binary)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-ca-hsm-');
  const dir = join(tmp.dir, 'ca');
  let env: NodeJS.ProcessEnv = {};
  after(() => tmp.cleanup());

  before(function () {
    const tokens = join(tmp.dir, 'tokens');
    mkdirSync(tokens, { mode: 0o700 });
    const conf = join(tmp.dir, 'softhsm2.conf');
    writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
    env = { SOFTHSM2_CONF: conf };
    const pin = randomBytes(6).toString('hex');
    const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'trellis-ca', '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { encoding: 'utf8', env: { ...process.env, ...env } });
    expect(init.status, init.stderr).to.equal(0);
    writeFileSync(join(tmp.dir, 'pin'), pin + '\n', { mode: 0o600 });
  });

  it('Should issue SVIDs that chain to the enterprise root with no key file in the CA dir', () => {
    ok(trellisSync(['hsm', 'keygen', '--dir', dir, '--module', MODULE, '--token-label', 'trellis-ca', '--key-label', 'intermediate', '--pin-file', join(tmp.dir, 'pin')], { env }));
    ok(trellisSync(['hsm', 'csr', '--dir', dir, '--trust-domain', 'corp.example'], { env }));

    const rootCert = join(tmp.dir, 'root.pem');
    const rootKey = join(tmp.dir, 'root.key');
    ok(openssl(['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', rootKey, '-out', rootCert, '-days', '30', '-subj', '/CN=Corp Root/O=Enterprise',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']));
    const ext = join(tmp.dir, 'ext.cnf');
    writeFileSync(ext, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://corp.example\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    const intPem = join(tmp.dir, 'int.pem');
    ok(openssl(['x509', '-req', '-in', join(dir, 'intermediate.csr'), '-CA', rootCert, '-CAkey', rootKey, '-CAcreateserial', '-days', '10', '-extfile', ext, '-out', intPem]));
    ok(trellisSync(['hsm', 'import', '--dir', dir, '--cert', intPem, '--chain', rootCert], { env }));

    const csr = join(tmp.dir, 'web.csr');
    ok(openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(tmp.dir, 'web.key'), '-subj', '/CN=web', '-out', csr]));
    const chain = ok(trellisSync(['ca', 'sign', '--dir', dir, '--csr', csr, '--spiffe-id', 'spiffe://corp.example/ns/prod/sa/web', '--ttl', '10m'], { env }));
    const leaf = join(tmp.dir, 'leaf.pem');
    writeFileSync(leaf, chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    const v = openssl(['verify', '-CAfile', rootCert, '-untrusted', join(dir, 'intermediate.pem'), leaf]);
    expect(v.status, v.stdout + v.stderr).to.equal(0);
    expect(readdirSync(dir).filter((n) => n.endsWith('.key'))).to.deep.equal([]);
  });
});
