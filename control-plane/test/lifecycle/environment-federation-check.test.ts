import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTrustBundle, formatSpiffeBundle, hasErrorCode, parseCertificate, pemToDer } from '@trellis/shared';
import { makeTmpDir, openssl } from '@trellis/testkit';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { buildCheckReport, caDirCheckItems, checkExitCode } from '../../src/lifecycle/check-report';
import { checkEnvironmentName, createEnvironmentIntermediate } from '../../src/lifecycle/environment';
import { federationDecision, loadFederatedBundle, parseFederationConfig } from '../../src/lifecycle/federation';
import { prepareNextIntermediate } from '../../src/lifecycle/intermediate-slots';

const DAY = 86_400_000;

describe('environments, federation and the check report', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTmpDir('trellis-efc-');
  });
  afterEach(() => tmp.cleanup());

  it('accepts DNS-label environment names only', () => {
    expect(checkEnvironmentName('prod')).to.equal('prod');
    for (const bad of ['Prod', 'a_b', '-x', '', 'x'.repeat(64)]) {
      expect(() => checkEnvironmentName(bad)).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_BAD_ENVIRONMENT'));
    }
  });

  it('collects every federation config problem with its field path', () => {
    let err: unknown;
    try {
      parseFederationConfig('federatesWith:\n  - trustDomain: "Bad Domain"\n    bundleFile: x.json\n  - trustDomain: example.org\n  - trustDomain: partner.org\n    bundleFile: a\n  - trustDomain: partner.org\n    bundleFile: b\n', '/etc/fed.yaml', 'example.org');
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_BAD_FEDERATION')).to.equal(true);
    const paths = ((err as { details: { issues: Array<{ path: string }> } }).details.issues).map((i) => i.path);
    expect(paths).to.deep.equal(['federatesWith[0].trustDomain', 'federatesWith[1].trustDomain', 'federatesWith[1].bundleFile', 'federatesWith[3].trustDomain']);
  });

  it('loads a federated SPIFFE bundle and refuses peers of trust domains we do not federate with', async () => {
    const partner = join(tmp.dir, 'partner');
    await initCertificateAuthority(partner, { trustDomain: 'partner.org' });
    const root = parseCertificate(pemToDer(readFileSync(join(partner, 'root.pem'), 'utf8'), 'CERTIFICATE', 'root')[0]!);
    writeFileSync(join(tmp.dir, 'partner.json'), formatSpiffeBundle(createTrustBundle('partner.org', [root])));
    writeFileSync(join(tmp.dir, 'fed.yaml'), 'federatesWith:\n  - trustDomain: partner.org\n    bundleFile: partner.json\n');
    const entries = parseFederationConfig(readFileSync(join(tmp.dir, 'fed.yaml'), 'utf8'), join(tmp.dir, 'fed.yaml'), 'example.org');
    expect(entries[0]!.bundleFile).to.equal(join(tmp.dir, 'partner.json'));
    const bundles = entries.map(loadFederatedBundle);
    expect(bundles[0]!.x509Authorities[0]!.der.equals(root.der)).to.equal(true);
    expect(federationDecision('partner.org', 'example.org', bundles).allowed).to.equal(true);
    expect(federationDecision('example.org', 'example.org', bundles).allowed).to.equal(true);
    const refused = federationDecision('stranger.org', 'example.org', bundles);
    expect(refused.allowed).to.equal(false);
    expect(refused.reason).to.contain('not federated');
    writeFileSync(join(tmp.dir, 'partner.json'), '{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["bm90IGEgY2VydA=="]}]}');
    expect(() => loadFederatedBundle(entries[0]!)).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_BAD_FEDERATION'));
  });

  it('warns once the intermediate is past half its life without a signed successor, and says what to run', async () => {
    const ca = join(tmp.dir, 'ca');
    await initCertificateAuthority(ca, { trustDomain: 'example.org', intermediateValidityDays: 300 });
    const at = new Date(Date.now() + 160 * DAY);
    let { subjects, notes } = caDirCheckItems(ca, at);
    let report = buildCheckReport(at, subjects, notes);
    const inter = report.items.find((i) => i.kind === 'intermediate')!;
    expect(inter.status).to.equal('warn');
    expect(inter.fix).to.contain('prepare-intermediate');
    expect(checkExitCode(report)).to.equal(0);
    await prepareNextIntermediate(ca);
    ({ subjects, notes } = caDirCheckItems(ca, at));
    report = buildCheckReport(at, subjects, notes);
    expect(report.items.find((i) => i.kind === 'intermediate')!.fix).to.contain('sign-intermediate');
    const late = new Date(Date.now() + 295 * DAY);
    ({ subjects, notes } = caDirCheckItems(ca, late));
    report = buildCheckReport(late, subjects, notes);
    expect(report.status).to.equal('critical');
    expect(checkExitCode(report)).to.equal(1);
  });
});

describe('check report for leaves', () => {
  const now = new Date(Date.UTC(2026, 0, 1, 12));
  const leaf = (notBefore: Date | null, minutesLeft: number) => ({ kind: 'leaf' as const, name: 'sidecar 1', subject: 'spiffe://example.org/a', notBefore, notAfter: new Date(now.getTime() + minutesLeft * 60_000), fix: 'restart it' });

  it('judges a leaf by its lifetime when the issue time is known', () => {
    const issued = new Date(now.getTime() - 55 * 60_000);
    expect(buildCheckReport(now, [leaf(issued, 5)]).items[0]!.status).to.equal('critical');
    expect(buildCheckReport(now, [leaf(new Date(now.getTime() - 10 * 60_000), 50)]).items[0]!.status).to.equal('ok');
  });

  it('flags a leaf of unknown lifetime only once it has expired, so one-minute SVIDs are not always critical', () => {
    expect(buildCheckReport(now, [leaf(null, 0.5)]).items[0]!.status).to.equal('ok');
    const expired = buildCheckReport(now, [leaf(null, -1)]);
    expect(expired.items[0]!.status).to.equal('expired');
    expect(expired.items[0]!.fix).to.equal('restart it');
    expect(checkExitCode(expired)).to.equal(1);
  });
});

describe('environment intermediates across key types', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTmpDir('trellis-env-');
  });
  afterEach(() => tmp.cleanup());

  const cases: Array<['ec-p256' | 'ec-p384' | 'rsa-2048', 'ec-p256' | 'ec-p384' | 'rsa-2048']> = [
    ['rsa-2048', 'ec-p384'],
    ['ec-p384', 'rsa-2048'],
    ['ec-p256', 'ec-p256'],
  ];
  for (const [rootType, envType] of cases) {
    it(`signs a ${envType} environment intermediate under a ${rootType} root that openssl verifies with the CA profile`, async () => {
      const root = join(tmp.dir, 'root');
      await initCertificateAuthority(root, { trustDomain: 'example.org', keyType: rootType });
      const r = await createEnvironmentIntermediate(root, join(tmp.dir, 'staging'), { name: 'staging', trustDomain: 'staging.example.org', keyType: envType, now: new Date(), validityDays: 90 });
      expect(r.files).to.include('environment.json');
      const cert = join(tmp.dir, 'staging', 'intermediate.pem');
      const v = openssl(['verify', '-x509_strict', '-CAfile', join(root, 'root.pem'), cert]);
      expect(v.status, v.stdout + v.stderr).to.equal(0);
      const text = openssl(['x509', '-noout', '-text', '-in', cert]).stdout;
      expect(text).to.match(/CA:TRUE, pathlen:0/);
      expect(text).to.contain('URI:spiffe://staging.example.org');
      expect(text).to.match(/Certificate Sign, CRL Sign/);
      expect(JSON.parse(readFileSync(join(tmp.dir, 'staging', 'environment.json'), 'utf8'))).to.include({ name: 'staging', trustDomain: 'staging.example.org' });
    });
  }
});
