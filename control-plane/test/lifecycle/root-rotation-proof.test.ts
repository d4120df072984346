import { expect } from 'chai';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { readCaCertificate, type CaCertificate } from '../../src/ca/ca-chain';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { pemCertificates } from '../../src/ca/pem';
import { ensureNewRoot, loadRootSigner, type LoadedRoot } from '../../src/lifecycle/root-dir';
import { prepareRootRotation, signRootRotationCsr, type RootRotationMaterial } from '../../src/lifecycle/root-rotation-driver';
import { ROOT_PROOF_MAX_SKEW_SECONDS, signRootRotationProof, verifyRootRotationProof } from '../../src/lifecycle/root-rotation-proof';

describe('root rotation proof (a JWS by the current root over the material)', function () {
  this.timeout(20_000);
  let tmp: { dir: string; cleanup: () => void };
  let current: LoadedRoot;
  let roots: CaCertificate[];
  let material: RootRotationMaterial;
  let other: RootRotationMaterial;
  const now = new Date();

  before(async () => {
    tmp = makeTmpDir('trellis-root-proof-');
    const caDir = join(tmp.dir, 'ca');
    await initCertificateAuthority(caDir, { trustDomain: 'example.org' });
    current = await loadRootSigner(caDir, now);
    roots = [readCaCertificate(pemCertificates(current.certPem, 'root')[0]!, 'root')];
    const prepared = await prepareRootRotation(caDir);
    material = await signRootRotationCsr(await ensureNewRoot(join(tmp.dir, 'new'), { trustDomain: 'example.org', now }), prepared.csrPem, { trustDomain: 'example.org', now });
    other = await signRootRotationCsr(await ensureNewRoot(join(tmp.dir, 'other'), { trustDomain: 'example.org', now }), prepared.csrPem, { trustDomain: 'example.org', now });
  });
  after(() => tmp.cleanup());

  async function refusal(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (err) {
      expect((err as { code?: string }).code).to.equal('TRELLIS_LIFECYCLE_BAD_ROOT_PROOF');
      return (err as Error).message;
    }
    throw new Error('expected a refusal');
  }

  it('Should accept material signed by a current root, naming that root', async () => {
    const proof = await signRootRotationProof(material, current, { trustDomain: 'example.org', now });
    expect((await verifyRootRotationProof(proof, material, { roots, trustDomain: 'example.org', now })).pem).to.equal(roots[0]!.pem);
  });

  it('Should refuse a proof signed by a root that is not in the current bundle (e.g. the new root itself)', async () => {
    const self = await loadRootSigner(join(tmp.dir, 'new'), now);
    const proof = await signRootRotationProof(material, self, { trustDomain: 'example.org', now });
    expect(await refusal(verifyRootRotationProof(proof, material, { roots, trustDomain: 'example.org', now }))).to.contain('current trust bundle');
  });

  it('Should refuse a proof made for other certificates, another trust domain, or outside the time window', async () => {
    const proof = await signRootRotationProof(material, current, { trustDomain: 'example.org', now });
    expect(await refusal(verifyRootRotationProof(proof, other, { roots, trustDomain: 'example.org', now }))).to.contain('other certificates');
    expect(await refusal(verifyRootRotationProof(proof, material, { roots, trustDomain: 'other.org', now }))).to.contain('trust domain');
    const later = new Date(now.getTime() + (ROOT_PROOF_MAX_SKEW_SECONDS + 5) * 1000);
    expect(await refusal(verifyRootRotationProof(proof, material, { roots, trustDomain: 'example.org', now: later }))).to.contain('stale');
  });

  it('Should refuse a proof whose signature was tampered with', async () => {
    const proof = await signRootRotationProof(material, current, { trustDomain: 'example.org', now });
    const [h, p, sig] = proof.split('.');
    const flipped = `${h}.${p}.${sig!.slice(0, 10)}${sig![10] === 'A' ? 'B' : 'A'}${sig!.slice(11)}`;
    await refusal(verifyRootRotationProof(flipped, material, { roots, trustDomain: 'example.org', now }));
    await refusal(verifyRootRotationProof('not.a.jws', material, { roots, trustDomain: 'example.org', now }));
  });
});
