/**
 * `trellis ca ...` run as a user runs it: the real binary in a child process,
 * exit codes, one-line errors with codes, and openssl as the verifier.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl, trellisSync } from '@trellis/testkit';

describe('trellis ca (real binary)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-ca-cli-');
  const dir = join(tmp.dir, 'ca');
  const csrPath = join(tmp.dir, 'web.csr');
  after(() => tmp.cleanup());

  before(() => {
    const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(tmp.dir, 'web.key'), '-subj', '/CN=web', '-out', csrPath]);
    expect(r.status, r.stderr).to.equal(0);
  });

  it('Should create a CA whose keys are 0600 and refuse to overwrite it without --force', () => {
    const r = trellisSync(['ca', 'init', '--dir', dir, '--trust-domain', 'example.org']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('example.org');
    for (const key of ['root.key', 'intermediate.key']) expect(statSync(join(dir, key)).mode & 0o777, key).to.equal(0o600);
    const rootBefore = readFileSync(join(dir, 'root.pem'), 'utf8');

    const again = trellisSync(['ca', 'init', '--dir', dir]);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.contain('[TRELLIS_CA_EXISTS]');
    expect(again.stderr.trim().split('\n')).to.have.length(1);
    expect(readFileSync(join(dir, 'root.pem'), 'utf8')).to.equal(rootBefore);
  });

  it('Should show the intermediate profile to openssl: pathLen 0, keyCertSign + cRLSign, URI SAN of the trust domain', () => {
    const text = openssl(['x509', '-noout', '-text', '-in', join(dir, 'intermediate.pem')]).stdout;
    expect(text).to.match(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).to.match(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).to.contain('URI:spiffe://example.org');
    expect(openssl(['verify', '-CAfile', join(dir, 'root.pem'), join(dir, 'intermediate.pem')]).status).to.equal(0);
    const days = (file: string): number => {
      const out = openssl(['x509', '-noout', '-startdate', '-enddate', '-in', join(dir, file)]).stdout;
      return (Date.parse(/notAfter=(.*)/.exec(out)![1]!) - Date.parse(/notBefore=(.*)/.exec(out)![1]!)) / 86_400_000;
    };
    expect(Math.round(days('root.pem'))).to.equal(3650);
    expect(Math.round(days('intermediate.pem'))).to.equal(365);
    const rootText = openssl(['x509', '-noout', '-text', '-in', join(dir, 'root.pem')]).stdout;
    expect(rootText).to.match(/Basic Constraints: critical\s+CA:TRUE/);
  });

  it('Should sign a CSR into a leaf + intermediate chain that openssl verifies', () => {
    const r = trellisSync(['ca', 'sign', '--dir', dir, '--csr', csrPath, '--spiffe-id', 'spiffe://example.org/ns/default/sa/web', '--ttl', '15m']);
    expect(r.status, r.stderr).to.equal(0);
    const certs = r.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
    expect(certs).to.have.length(2);
    expect(certs[1]).to.equal(readFileSync(join(dir, 'intermediate.pem'), 'utf8'));
    const leaf = join(tmp.dir, 'leaf.pem');
    writeFileSync(leaf, certs[0]!);
    const v = openssl(['verify', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'intermediate.pem'), leaf]);
    expect(v.status, v.stdout + v.stderr).to.equal(0);
    const dates = openssl(['x509', '-noout', '-startdate', '-enddate', '-in', leaf]).stdout;
    const start = Date.parse(/notBefore=(.*)/.exec(dates)![1]!);
    const end = Date.parse(/notAfter=(.*)/.exec(dates)![1]!);
    expect(end - start).to.be.at.most(16 * 60_000);
    expect(end - start).to.be.at.least(15 * 60_000);
    const audit = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n');
    expect(JSON.parse(audit[audit.length - 1]!).spiffeId).to.equal('spiffe://example.org/ns/default/sa/web');
  });

  const failures: Array<[string, string[], number, string]> = [
    ['a TTL that is not a duration', ['--ttl', 'soon'], 2, 'TRELLIS_USAGE'],
    ['a TTL above 24 h', ['--ttl', '25h'], 1, 'TRELLIS_CA_TTL_OUT_OF_RANGE'],
    ['an invalid SPIFFE ID', ['--spiffe-id-override', 'spiffe://Example.org/x'], 1, 'TRELLIS_CA_BAD_SPIFFE_ID'],
    ['a missing CA dir', ['--dir-override', 'nope'], 1, 'TRELLIS_CA_DIR_MISSING'],
    ['an unknown flag', ['--bogus'], 2, ''],
  ];
  for (const [what, extra, status, code] of failures) {
    it(`Should exit ${status} on ${what}, with one line naming the problem`, () => {
      let d = dir;
      let id = 'spiffe://example.org/ns/default/sa/web';
      const args: string[] = [];
      for (let i = 0; i < extra.length; i++) {
        if (extra[i] === '--dir-override') d = join(tmp.dir, extra[++i]!);
        else if (extra[i] === '--spiffe-id-override') id = extra[++i]!;
        else args.push(extra[i]!);
      }
      const r = trellisSync(['ca', 'sign', '--dir', d, '--csr', csrPath, '--spiffe-id', id, ...args]);
      expect(r.status, r.stderr).to.equal(status);
      expect(r.stdout).to.equal('');
      if (code && status === 1) expect(r.stderr).to.contain(`[${code}]`);
      expect(r.stderr).not.to.match(/\n\s+at /);
    });
  }

  it('Should refuse a CSR asking for another identity and write no audit line', () => {
    const other = join(tmp.dir, 'admin.csr');
    openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(tmp.dir, 'admin.key'), '-subj', '/CN=x', '-addext', 'subjectAltName=URI:spiffe://example.org/ns/default/sa/admin', '-out', other]);
    const before = readFileSync(join(dir, 'audit.log'), 'utf8');
    const r = trellisSync(['ca', 'sign', '--dir', dir, '--csr', other, '--spiffe-id', 'spiffe://example.org/ns/default/sa/web']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('[TRELLIS_CA_CSR_IDENTITY_MISMATCH]');
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).to.equal(before);
  });

  it('Should refuse a file that is not a CSR with BAD_PEM', () => {
    const r = trellisSync(['ca', 'sign', '--dir', dir, '--csr', join(dir, 'root.pem'), '--spiffe-id', 'spiffe://example.org/a']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('[TRELLIS_CA_BAD_PEM]');
  });

  it('Should replace the CA with --force, leaving no temp files', () => {
    const before = readFileSync(join(dir, 'root.pem'), 'utf8');
    const r = trellisSync(['ca', 'init', '--dir', dir, '--trust-domain', 'example.org', '--key-type', 'ec-p384', '--force']);
    expect(r.status, r.stderr).to.equal(0);
    expect(readFileSync(join(dir, 'root.pem'), 'utf8')).not.to.equal(before);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).to.deep.equal([]);
    expect(openssl(['x509', '-noout', '-text', '-in', join(dir, 'intermediate.pem')]).stdout).to.contain('secp384r1');
  });

  it('Should reject an unknown key type as a usage error', () => {
    const r = trellisSync(['ca', 'init', '--dir', join(tmp.dir, 'ed'), '--key-type', 'ed25519']);
    expect(r.status).to.equal(2);
    expect(r.stderr).to.contain('--key-type');
  });
});
