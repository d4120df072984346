/**
 * Trellis as a subordinate of an existing enterprise root: the root is made
 * and operated with the openssl binary only, signs the CSR from
 * `trellis ca intermediate-csr`, and `trellis ca import` installs the result.
 */
import { expect } from 'chai';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl, trellisSync } from '@trellis/testkit';

function ok(r: { status: number; stdout: string; stderr: string }): string {
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout;
}

/** A root CA made with openssl (`req -x509`). */
function makeRoot(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  ok(openssl(['req', '-x509', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${name}/O=Enterprise`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']));
  return { cert, key };
}

/** Has `root` sign `csr` as a CA (or, with `leafProfile`, as a non-CA) certificate. */
function signIntermediate(dir: string, root: { cert: string; key: string }, csr: string, out: string, leafProfile = false): void {
  const ext = join(dir, 'ext.cnf');
  writeFileSync(ext, leafProfile
    ? 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:spiffe://corp.example\n'
    : 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://corp.example\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  ok(openssl(['x509', '-req', '-in', csr, '-CA', root.cert, '-CAkey', root.key, '-CAcreateserial', '-days', '10', '-extfile', ext, '-out', out]));
}

describe('trellis ca as a subordinate of an enterprise root (real binary + openssl)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-ca-sub-');
  const dir = join(tmp.dir, 'ca');
  after(() => tmp.cleanup());

  it('Should write an intermediate key (0600) and a CSR that asks for the trust domain and a CA certificate', () => {
    const out = ok(trellisSync(['ca', 'intermediate-csr', '--dir', dir, '--trust-domain', 'corp.example']));
    expect(out).to.contain('-----BEGIN CERTIFICATE REQUEST-----');
    const text = ok(openssl(['req', '-noout', '-text', '-verify', '-in', join(dir, 'intermediate.csr')]));
    expect(text).to.contain('URI:spiffe://corp.example');
    expect(text).to.match(/CA:TRUE/);
    expect(existsSync(join(dir, 'root.key'))).to.equal(false);
  });

  it('Should refuse a certificate for a different key, a chain without its root and a non-CA certificate', () => {
    const root = makeRoot(tmp.dir, 'corp-root');
    const stranger = join(tmp.dir, 'stranger.csr');
    ok(openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(tmp.dir, 'stranger.key'), '-subj', '/CN=stranger', '-out', stranger]));
    signIntermediate(tmp.dir, root, stranger, join(tmp.dir, 'stranger.pem'));
    let r = trellisSync(['ca', 'import', '--dir', dir, '--cert', join(tmp.dir, 'stranger.pem'), '--chain', root.cert]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('[TRELLIS_CA_KEY_MISMATCH]');

    signIntermediate(tmp.dir, root, join(dir, 'intermediate.csr'), join(tmp.dir, 'int.pem'));
    const otherRoot = makeRoot(tmp.dir, 'other-root');
    r = trellisSync(['ca', 'import', '--dir', dir, '--cert', join(tmp.dir, 'int.pem'), '--chain', otherRoot.cert]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('[TRELLIS_CA_CHAIN_INVALID]');

    signIntermediate(tmp.dir, root, join(dir, 'intermediate.csr'), join(tmp.dir, 'notca.pem'), true);
    r = trellisSync(['ca', 'import', '--dir', dir, '--cert', join(tmp.dir, 'notca.pem'), '--chain', root.cert]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('[TRELLIS_CA_CHAIN_INVALID]');
    expect(existsSync(join(dir, 'intermediate.pem'))).to.equal(false);
  });

  it('Should import the signed intermediate and issue SVIDs that chain to the enterprise root', () => {
    const root = { cert: join(tmp.dir, 'corp-root.pem'), key: join(tmp.dir, 'corp-root.key') };
    ok(trellisSync(['ca', 'import', '--dir', dir, '--cert', join(tmp.dir, 'int.pem'), '--chain', root.cert]));
    expect(readFileSync(join(dir, 'root.pem'), 'utf8')).to.equal(readFileSync(root.cert, 'utf8'));
    expect(existsSync(join(dir, 'root.key'))).to.equal(false);

    const csr = join(tmp.dir, 'web.csr');
    ok(openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-keyout', join(tmp.dir, 'web.key'), '-subj', '/CN=web', '-out', csr]));
    const chain = ok(trellisSync(['ca', 'sign', '--dir', dir, '--csr', csr, '--spiffe-id', 'spiffe://corp.example/ns/prod/sa/web']));
    const leaf = join(tmp.dir, 'leaf.pem');
    writeFileSync(leaf, chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0]);
    const v = openssl(['verify', '-CAfile', root.cert, '-untrusted', join(dir, 'intermediate.pem'), leaf]);
    expect(v.status, v.stdout + v.stderr).to.equal(0);

    const wrongTd = trellisSync(['ca', 'sign', '--dir', dir, '--csr', csr, '--spiffe-id', 'spiffe://cluster.local/ns/prod/sa/web']);
    expect(wrongTd.status).to.equal(1);
    expect(wrongTd.stderr).to.contain('[TRELLIS_CA_BAD_SPIFFE_ID]');
  });
});
