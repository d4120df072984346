/**
 * The CA lifecycle commands through the real `trellis` binary, checked with
 * openssl: check exit codes, offline intermediate rotation, environments
 * under one root, bundle export, revoke.
 */
import { expect } from 'chai';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initCertificateAuthority, parseRevocations } from '@trellis/control-plane';
import { parseSpiffeBundle } from '@trellis/shared';
import { makeTmpDir, openssl, trellisSync } from '@trellis/testkit';

function leafCsr(dir: string, name: string): string {
  const csr = join(dir, `${name}.csr`);
  const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(dir, `${name}.key`), '-subj', `/CN=${name}`, '-out', csr]);
  expect(r.status, r.stderr).to.equal(0);
  return csr;
}

/** Issues a leaf with `trellis ca sign` and verifies it with openssl against `rootFile`. */
function signAndVerify(tmp: string, caDir: string, rootFile: string, spiffeId: string): { status: number; out: string } {
  const name = `leaf-${Math.random().toString(16).slice(2)}`;
  const s = trellisSync(['ca', 'sign', '--dir', caDir, '--csr', leafCsr(tmp, name), '--spiffe-id', spiffeId, '--ttl', '10m']);
  expect(s.status, s.stderr).to.equal(0);
  const [leaf, ...rest] = s.stdout.split(/(?<=-----END CERTIFICATE-----\n)/);
  writeFileSync(join(tmp, `${name}.pem`), leaf!);
  writeFileSync(join(tmp, `${name}-chain.pem`), rest.join(''));
  const v = openssl(['verify', '-CAfile', rootFile, '-untrusted', join(tmp, `${name}-chain.pem`), join(tmp, `${name}.pem`)]);
  return { status: v.status, out: v.stdout + v.stderr };
}

describe('CA lifecycle through the trellis binary', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTmpDir('trellis-lifecycle-cli-');
  });
  afterEach(() => tmp.cleanup());

  it('trellis check exits 1 and says what to run when the intermediate expires within the critical threshold', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org', intermediateValidityDays: 5 });
    const r = trellisSync(['check', '--ca-dir', ca, '-o', 'json']);
    expect(r.status, r.stderr).to.equal(1);
    const report = JSON.parse(r.stdout) as { status: string; items: Array<{ kind: string; status: string; fix: string }> };
    expect(report.status).to.equal('critical');
    const inter = report.items.find((i) => i.kind === 'intermediate')!;
    expect(inter.status).to.equal('critical');
    expect(inter.fix).to.contain('trellis ca prepare-intermediate');
    expect(report.items.find((i) => i.kind === 'root')!.status).to.equal('ok');
    const text = trellisSync(['check', '--ca-dir', ca]);
    expect(text.status).to.equal(1);
    expect(text.stdout).to.match(/CRITICAL\s+intermediate/);
  });

  it('trellis check warns (exit 0) for an intermediate 30 days from expiry, and is quiet for a fresh CA', async () => {
    const warn = join(tmp.dir, 'warn');
    await initCertificateAuthority(warn, { trustDomain: 'example.org', intermediateValidityDays: 30 });
    const r = trellisSync(['check', '--ca-dir', warn, '-o', 'json']);
    expect(r.status, r.stderr).to.equal(0);
    expect((JSON.parse(r.stdout) as { status: string }).status).to.equal('warn');
    const fresh = join(tmp.dir, 'fresh');
    await initCertificateAuthority(fresh, { trustDomain: 'example.org' });
    const f = trellisSync(['check', '--ca-dir', fresh, '-o', 'json']);
    expect(f.status, f.stderr).to.equal(0);
    expect((JSON.parse(f.stdout) as { status: string }).status).to.equal('ok');
  });

  it('trellis check exits 2 when given nothing to check', () => {
    expect(trellisSync(['check']).status).to.equal(2);
  });

  it('rotates the intermediate with the root offline: prepare, sign where the root lives, activate; old and new leaves verify', async () => {
    const ca = join(tmp.dir, 'ca');
    const rootDir = join(tmp.dir, 'offline-root');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    mkdirSync(rootDir);
    copyFileSync(join(ca, 'root.pem'), join(rootDir, 'root.pem'));
    copyFileSync(join(ca, 'root.key'), join(rootDir, 'root.key'));
    rmSync(join(ca, 'root.key'));
    const before = signAndVerify(tmp.dir, ca, join(ca, 'root.pem'), 'spiffe://example.org/ns/a/sa/before');
    expect(before.status, before.out).to.equal(0);

    const p = trellisSync(['ca', 'prepare-intermediate', '--dir', ca]);
    expect(p.status, p.stderr).to.equal(0);
    expect(statSync(join(ca, 'next', 'intermediate.key')).mode & 0o777).to.equal(0o600);
    const early = trellisSync(['ca', 'activate-intermediate', '--dir', ca]);
    expect(early.status).to.equal(1);
    expect(early.stderr).to.contain('TRELLIS_LIFECYCLE_NEXT_NOT_SIGNED');
    const check = trellisSync(['check', '--ca-dir', ca, '-o', 'json']);
    expect((JSON.parse(check.stdout) as { notes: string[] }).notes.join(' ')).to.contain('waiting to be signed');

    const s = trellisSync(['ca', 'sign-intermediate', '--root-dir', rootDir, '--csr', join(ca, 'next', 'intermediate.csr'), '--trust-domain', 'example.org', '--out', join(tmp.dir, 'next.pem')]);
    expect(s.status, s.stderr).to.equal(0);
    const v = openssl(['verify', '-CAfile', join(rootDir, 'root.pem'), join(tmp.dir, 'next.pem')]);
    expect(v.status, v.stderr).to.equal(0);
    const a = trellisSync(['ca', 'activate-intermediate', '--dir', ca, '--cert', join(tmp.dir, 'next.pem')]);
    expect(a.status, a.stderr).to.equal(0);
    expect(readFileSync(join(ca, 'intermediate.pem'), 'utf8')).to.equal(readFileSync(join(tmp.dir, 'next.pem'), 'utf8'));
    const after = signAndVerify(tmp.dir, ca, join(ca, 'root.pem'), 'spiffe://example.org/ns/a/sa/after');
    expect(after.status, after.out).to.equal(0);
  });

  it('installs and activates the next intermediate signed by the offline root through trellis ca import too', async () => {
    const ca = join(tmp.dir, 'ca');
    const rootDir = join(tmp.dir, 'offline-root');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    mkdirSync(rootDir);
    copyFileSync(join(ca, 'root.pem'), join(rootDir, 'root.pem'));
    copyFileSync(join(ca, 'root.key'), join(rootDir, 'root.key'));
    rmSync(join(ca, 'root.key'));
    const oldIntermediate = readFileSync(join(ca, 'intermediate.pem'), 'utf8');
    expect(trellisSync(['ca', 'prepare-intermediate', '--dir', ca]).status).to.equal(0);
    const s = trellisSync(['ca', 'sign-intermediate', '--root-dir', rootDir, '--csr', join(ca, 'next', 'intermediate.csr'), '--trust-domain', 'example.org', '--out', join(tmp.dir, 'next.pem')]);
    expect(s.status, s.stderr).to.equal(0);
    const imp = trellisSync(['ca', 'import', '--dir', ca, '--cert', join(tmp.dir, 'next.pem'), '--chain', join(rootDir, 'root.pem')]);
    expect(imp.status, imp.stderr).to.equal(0);
    expect(imp.stdout).to.contain('activated the next intermediate');
    expect(readFileSync(join(ca, 'intermediate.pem'), 'utf8')).to.equal(readFileSync(join(tmp.dir, 'next.pem'), 'utf8'));
    expect(readFileSync(join(ca, 'intermediate.pem'), 'utf8')).to.not.equal(oldIntermediate);
    const after = signAndVerify(tmp.dir, ca, join(ca, 'root.pem'), 'spiffe://example.org/ns/a/sa/imported');
    expect(after.status, after.out).to.equal(0);
  });

  it('refuses to sign an intermediate CSR for another trust domain than the one asked for', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    expect(trellisSync(['ca', 'prepare-intermediate', '--dir', ca]).status).to.equal(0);
    const s = trellisSync(['ca', 'sign-intermediate', '--root-dir', ca, '--csr', join(ca, 'next', 'intermediate.csr'), '--trust-domain', 'other.org']);
    expect(s.status).to.equal(1);
    expect(s.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_INTERMEDIATE_CSR');
  });

  it('creates separate environment intermediates under one root; each issues only for its own trust domain', async () => {
    const root = join(tmp.dir, 'root');
    await initCertificateAuthority(root, { trustDomain: 'example.org' });
    for (const env of ['dev', 'prod']) {
      const r = trellisSync(['ca', 'new-intermediate', '--root-dir', root, '--out-dir', join(tmp.dir, env), '--name', env, '--trust-domain', `${env}.example.org`]);
      expect(r.status, r.stderr).to.equal(0);
      expect(statSync(join(tmp.dir, env, 'intermediate.key')).mode & 0o777).to.equal(0o600);
      expect(() => statSync(join(tmp.dir, env, 'root.key')), 'the root key never leaves the root dir').to.throw();
    }
    const prod = signAndVerify(tmp.dir, join(tmp.dir, 'prod'), join(root, 'root.pem'), 'spiffe://prod.example.org/ns/a/sa/web');
    expect(prod.status, prod.out).to.equal(0);
    const dev = signAndVerify(tmp.dir, join(tmp.dir, 'dev'), join(root, 'root.pem'), 'spiffe://dev.example.org/ns/a/sa/web');
    expect(dev.status, dev.out).to.equal(0);
    const cross = trellisSync(['ca', 'sign', '--dir', join(tmp.dir, 'dev'), '--csr', leafCsr(tmp.dir, 'cross'), '--spiffe-id', 'spiffe://prod.example.org/ns/a/sa/web']);
    expect(cross.status).to.equal(1);
    expect(cross.stderr).to.contain('TRELLIS_CA_BAD_SPIFFE_ID');
    expect(readFileSync(join(tmp.dir, 'prod', 'intermediate.pem'), 'utf8')).to.not.equal(readFileSync(join(tmp.dir, 'dev', 'intermediate.pem'), 'utf8'));
    const again = trellisSync(['ca', 'new-intermediate', '--root-dir', root, '--out-dir', join(tmp.dir, 'prod'), '--name', 'prod']);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.contain('TRELLIS_CA_EXISTS');
    const badName = trellisSync(['ca', 'new-intermediate', '--root-dir', root, '--out-dir', join(tmp.dir, 'x'), '--name', 'Prod_1']);
    expect(badName.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_ENVIRONMENT');
  });

  it('exports the bundle as a SPIFFE bundle document holding both roots during a root rotation', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    const one = trellisSync(['bundle', 'export', '--ca-dir', ca, '--sequence', '3']);
    expect(one.status, one.stderr).to.equal(0);
    const doc = JSON.parse(one.stdout) as { keys: Array<{ use: string; x5c: string[]; kid?: string }>; spiffe_sequence: number };
    expect(doc.keys).to.have.length(1);
    expect(doc.keys[0]!.use).to.equal('x509-svid');
    expect(doc.keys[0]!.kid).to.equal(undefined);
    expect(doc.spiffe_sequence).to.equal(3);
    const b = parseSpiffeBundle('example.org', one.stdout);
    expect(b.x509Authorities[0]!.der.toString('base64')).to.equal(readFileSync(join(ca, 'root.pem'), 'utf8').replace(/-----[A-Z ]+-----|\s/g, ''));

    const start = trellisSync(['ca', 'rotate-root', '--ca-dir', ca, '--root-dir', join(tmp.dir, 'newroot')]);
    expect(start.status, start.stderr).to.equal(0);
    const two = trellisSync(['bundle', 'export', '--ca-dir', ca, '--out', join(tmp.dir, 'bundle.json')]);
    expect(two.status, two.stderr).to.equal(0);
    expect(parseSpiffeBundle('example.org', readFileSync(join(tmp.dir, 'bundle.json'), 'utf8')).x509Authorities).to.have.length(2);
    const pem = trellisSync(['bundle', 'export', '--ca-dir', ca, '--format', 'pem']);
    writeFileSync(join(tmp.dir, 'two.pem'), pem.stdout);
    const v = openssl(['verify', '-CAfile', join(tmp.dir, 'two.pem'), join(tmp.dir, 'newroot', 'root.pem')]);
    expect(v.status, v.stderr).to.equal(0);
  });

  it('ca rotate-root without an admin address stays in phase 1 and ca status says what it waits for', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    expect(trellisSync(['ca', 'rotate-root', '--ca-dir', ca]).status, 'starting needs --root-dir').to.equal(2);
    const r = trellisSync(['ca', 'rotate-root', '--ca-dir', ca, '--root-dir', join(tmp.dir, 'newroot'), '-o', 'json']);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.include({ phase: 'bundle', applied: 'none', roots: 2 });
    expect(statSync(join(tmp.dir, 'newroot', 'root.key')).mode & 0o777).to.equal(0o600);
    const again = trellisSync(['ca', 'rotate-root', '--ca-dir', ca, '-o', 'json']);
    expect(JSON.parse(again.stdout).phase, 'a second run resumes the same rotation').to.equal('bundle');
    const st = trellisSync(['ca', 'status', '--ca-dir', ca, '-o', 'json']);
    expect(st.status, st.stderr).to.equal(0);
    const view = JSON.parse(st.stdout) as { roots: unknown[]; rootRotation: { phase: string; waitingFor: string } };
    expect(view.roots).to.have.length(2);
    expect(view.rootRotation.phase).to.equal('bundle');
    expect(view.rootRotation.waitingFor).to.contain('--admin');
  });

  it('trellis check lists federated roots from a bundle another trust domain exported, and refuses a bad federation config', async () => {
    const ours = join(tmp.dir, 'ours');
    const partner = join(tmp.dir, 'partner');
    await initCertificateAuthority(ours, { trustDomain: 'example.org' });
    await initCertificateAuthority(partner, { trustDomain: 'partner.org' });
    expect(trellisSync(['bundle', 'export', '--ca-dir', partner, '--out', join(tmp.dir, 'partner.json')]).status).to.equal(0);
    writeFileSync(join(tmp.dir, 'fed.yaml'), 'federatesWith:\n  - trustDomain: partner.org\n    bundleFile: partner.json\n');
    const r = trellisSync(['check', '--ca-dir', ours, '--federation', join(tmp.dir, 'fed.yaml'), '-o', 'json']);
    expect(r.status, r.stderr).to.equal(0);
    const items = (JSON.parse(r.stdout) as { items: Array<{ name: string; status: string }> }).items;
    expect(items.map((i) => i.name)).to.include('federated partner.org #1');
    writeFileSync(join(tmp.dir, 'bad.yaml'), 'federatesWith:\n  - trustDomain: example.org\n    bundleFile: partner.json\n');
    const bad = trellisSync(['check', '--ca-dir', ours, '--federation', join(tmp.dir, 'bad.yaml')]);
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_FEDERATION');
    expect(bad.stderr).to.contain('federatesWith[0].trustDomain');
  });

  it('revoke persists entries the control plane watcher reads, lifts them, and refuses bad targets', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org' });
    const s = trellisSync(['ca', 'sign', '--dir', ca, '--csr', leafCsr(tmp.dir, 'web'), '--spiffe-id', 'spiffe://example.org/ns/a/sa/web']);
    const serial = openssl(['x509', '-noout', '-serial'], s.stdout.split(/(?<=-----END CERTIFICATE-----\n)/)[0]).stdout.trim().replace('serial=', '');
    expect(trellisSync(['revoke', '--ca-dir', ca, '--spiffe-id', 'spiffe://example.org/ns/a/sa/web', '--reason', 'key leaked']).status).to.equal(0);
    const r2 = trellisSync(['revoke', '--ca-dir', ca, '--serial', serial]);
    expect(r2.status, r2.stderr).to.equal(0);
    const file = join(ca, 'revocations.json');
    expect(parseRevocations(readFileSync(file, 'utf8'), file)).to.deep.equal({ serials: [serial.toLowerCase().replace(/^0+/, '')], spiffeIds: ['spiffe://example.org/ns/a/sa/web'] });
    const list = JSON.parse(trellisSync(['revoke', '--ca-dir', ca, '--list', '-o', 'json']).stdout) as { entries: Array<{ kind: string; expiresAt: string | null }> };
    expect(list.entries.find((e) => e.kind === 'serial')!.expiresAt, 'the serial expires with its certificate').to.be.a('string');
    expect(trellisSync(['revoke', '--ca-dir', ca, '--spiffe-id', 'spiffe://example.org/ns/a/sa/web', '--lift']).status).to.equal(0);
    expect(parseRevocations(readFileSync(file, 'utf8'), file).spiffeIds).to.deep.equal([]);
    const again = trellisSync(['revoke', '--ca-dir', ca, '--spiffe-id', 'spiffe://example.org/ns/a/sa/web', '--lift']);
    expect(again.status).to.equal(1);
    expect(again.stderr).to.contain('TRELLIS_LIFECYCLE_NOT_REVOKED');
    const bad = trellisSync(['revoke', '--ca-dir', ca, '--spiffe-id', 'https://example.org/x']);
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_REVOCATION');
    expect(trellisSync(['revoke', '--ca-dir', ca]).status).to.equal(2);
  });
});
