import { expect } from 'chai';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl } from '@trellis/testkit';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { loadCertificateAuthority } from '../../src/ca/certificate-authority';
import {
  activateNextIntermediate,
  installNextIntermediate,
  prepareNextIntermediate,
  readIntermediateSlots,
  signNextIntermediateWithRoot,
} from '../../src/lifecycle/intermediate-slots';
import { loadRootSigner } from '../../src/lifecycle/root-dir';
import { signIntermediateCsr } from '../../src/lifecycle/ca-material';
import { hasErrorCode } from '@trellis/shared';

function leafCsr(dir: string): Buffer {
  const key = join(dir, `leaf-${Math.random().toString(16).slice(2)}.key`);
  const csr = key.replace(/\.key$/, '.csr');
  const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', key, '-subj', '/CN=leaf', '-outform', 'DER', '-out', csr]);
  expect(r.status, r.stderr).to.equal(0);
  return readFileSync(csr);
}

function verifyLeaf(tmp: string, rootsPem: string, chainPem: string): { status: number; out: string } {
  const roots = join(tmp, `roots-${Math.random().toString(16).slice(2)}.pem`);
  const untrusted = join(tmp, `chain-${Math.random().toString(16).slice(2)}.pem`);
  const leaf = join(tmp, `leaf-${Math.random().toString(16).slice(2)}.pem`);
  const [first, ...rest] = chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
  writeFileSync(roots, rootsPem);
  writeFileSync(leaf, first!);
  writeFileSync(untrusted, rest.join(''));
  const r = openssl(['verify', '-CAfile', roots, '-untrusted', untrusted, leaf]);
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('intermediate rotation slots', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;

  beforeEach(async () => {
    tmp = makeTmpDir('trellis-lifecycle-');
    caDir = join(tmp.dir, 'ca');
    await initCertificateAuthority(caDir, { trustDomain: 'example.org' });
  });
  afterEach(() => tmp.cleanup());

  it('prepares a next key 0600 and a CSR, and keeps them on a repeated call', async () => {
    const a = await prepareNextIntermediate(caDir);
    expect(a.created).to.equal(true);
    expect(statSync(join(caDir, 'next', 'intermediate.key')).mode & 0o777).to.equal(0o600);
    const b = await prepareNextIntermediate(caDir);
    expect(b.created).to.equal(false);
    expect(b.csrPem).to.equal(a.csrPem);
    expect(readIntermediateSlots(caDir).nextState).to.equal('prepared');
    const r = openssl(['req', '-noout', '-verify', '-in', a.csrPath]);
    expect(r.status, r.stderr).to.equal(0);
  });

  it('refuses to activate before the next intermediate is signed', async () => {
    await prepareNextIntermediate(caDir);
    expect(() => activateNextIntermediate(caDir, { now: new Date(), force: true })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_NEXT_NOT_SIGNED'));
  });

  it('refuses to activate when nothing was prepared', () => {
    expect(() => activateNextIntermediate(caDir, { now: new Date(), force: true })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_NO_NEXT_INTERMEDIATE'));
  });

  it('issues from the new intermediate after activation, while leaves of the old one still verify against the same bundle', async () => {
    const before = await loadCertificateAuthority(caDir);
    const oldLeaf = await before.issue({ csr: leafCsr(tmp.dir), spiffeId: 'spiffe://example.org/ns/a/sa/old', requester: 'test' });
    before.close();
    const oldIntermediate = readFileSync(join(caDir, 'intermediate.pem'), 'utf8');

    await signNextIntermediateWithRoot(caDir, caDir, { now: new Date(), validityDays: 400 });
    expect(readIntermediateSlots(caDir).nextState).to.equal('signed');
    const early = activateNextIntermediate(caDir, { now: new Date() });
    expect(early.activated, 'a fresh intermediate is not replaced early').to.equal(false);
    const r = activateNextIntermediate(caDir, { now: new Date(), force: true });
    expect(r.activated).to.equal(true);
    expect(existsSync(join(caDir, 'next'))).to.equal(false);
    expect(readFileSync(join(caDir, 'previous', 'intermediate.pem'), 'utf8')).to.equal(oldIntermediate);
    expect(statSync(join(caDir, 'intermediate.key')).mode & 0o777).to.equal(0o600);

    const after = await loadCertificateAuthority(caDir);
    const newLeaf = await after.issue({ csr: leafCsr(tmp.dir), spiffeId: 'spiffe://example.org/ns/a/sa/new', requester: 'test' });
    after.close();
    expect(readFileSync(join(caDir, 'intermediate.pem'), 'utf8')).to.not.equal(oldIntermediate);
    const bundle = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const vNew = verifyLeaf(tmp.dir, bundle, newLeaf.chainPem);
    expect(vNew.status, vNew.out).to.equal(0);
    const vOld = verifyLeaf(tmp.dir, bundle, oldLeaf.chainPem);
    expect(vOld.status, vOld.out).to.equal(0);
  });

  it('signs an offline CSR with the root dir and installs it after checking it matches the prepared key', async () => {
    const other = join(tmp.dir, 'other');
    await initCertificateAuthority(other, { trustDomain: 'example.org' });
    const prepared = await prepareNextIntermediate(caDir);
    const root = await loadRootSigner(caDir, new Date());
    const signed = await signIntermediateCsr(root, prepared.csrPem, { now: new Date() });
    writeFileSync(join(tmp.dir, 'signed.pem'), signed.certPem);
    const v = openssl(['verify', '-CAfile', join(caDir, 'root.pem'), '-x509_strict', join(tmp.dir, 'signed.pem')]);
    expect(v.status, v.stderr + v.stdout).to.equal(0);
    // A certificate for another key is refused.
    const foreign = readFileSync(join(other, 'intermediate.pem'), 'utf8');
    expect(() => installNextIntermediate(caDir, foreign, { now: new Date() })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_CA_KEY_MISMATCH'));
    installNextIntermediate(caDir, signed.certPem, { now: new Date() });
    expect(readIntermediateSlots(caDir).next?.pem).to.equal(signed.certPem);
  });

  it('refuses a next intermediate signed by a root the bundle does not hold', async () => {
    const other = join(tmp.dir, 'other');
    await initCertificateAuthority(other, { trustDomain: 'example.org' });
    const prepared = await prepareNextIntermediate(caDir);
    const foreignRoot = await loadRootSigner(other, new Date());
    const signed = await signIntermediateCsr(foreignRoot, prepared.csrPem, { now: new Date() });
    expect(() => installNextIntermediate(caDir, signed.certPem, { now: new Date() })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_CA_CHAIN_INVALID'));
  });

  it('refuses to sign a CSR that does not ask for a bare trust domain ID', async () => {
    const csrPath = join(tmp.dir, 'bad.csr');
    const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', join(tmp.dir, 'bad.key'), '-subj', '/CN=x', '-addext', 'subjectAltName=URI:spiffe://example.org/ns/a/sa/b', '-out', csrPath]);
    expect(r.status, r.stderr).to.equal(0);
    const root = await loadRootSigner(caDir, new Date());
    let err: unknown;
    try {
      await signIntermediateCsr(root, readFileSync(csrPath, 'utf8'), { now: new Date() });
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_BAD_INTERMEDIATE_CSR'), String(err)).to.equal(true);
  });

  it('refuses a root dir whose key belongs to no certificate', async () => {
    const other = join(tmp.dir, 'other');
    await initCertificateAuthority(other, { trustDomain: 'example.org' });
    writeFileSync(join(other, 'root.key'), readFileSync(join(caDir, 'root.key')));
    let err: unknown;
    try {
      await loadRootSigner(other, new Date());
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_ROOT_UNAVAILABLE'), String(err)).to.equal(true);
  });
});
