import 'reflect-metadata';
import { expect } from 'chai';
import { randomBytes, webcrypto } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { makeTmpDir, openssl } from '@trellis/testkit';
import { CaError, CaErrorCode } from '../../src/ca/ca-error';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { HsmError, HsmErrorCode } from '../../src/hsm/hsm-error';
import { generateHsmKey, importHsmIntermediate, writeHsmIntermediateCsr } from '../../src/hsm/hsm-setup';
import { loadSigner, requireSigner } from '../../src/hsm/load-signer';
import type { Pkcs11Signer } from '../../src/hsm/pkcs11-signer';
import { parseSignerConfig } from '../../src/hsm/signer-config';
import { describeWith, SOFTHSM } from '@trellis/testkit';
import { createSoftHsm, SOFTHSM_MODULE, type SoftHsm } from './softhsm-token';

x509.cryptoProvider.set(webcrypto as never);

describeWith(SOFTHSM, 'Setting up a CA dir with its key in the HSM', function () {
  let hsm: SoftHsm;
  let tmp: { dir: string; cleanup: () => void };
  const signers: Pkcs11Signer[] = [];

  before(function () {
    hsm = createSoftHsm();
    const token = hsm.initToken('setup');
    tmp = makeTmpDir('trellis-hsm-setup-');
    for (const keyType of ['ec-p384', 'rsa-2048'] as const) {
      generateHsmKey(join(tmp.dir, keyType), parseSignerConfig({ type: 'pkcs11', module: SOFTHSM_MODULE, tokenLabel: token.label, keyLabel: keyType, pinFile: token.pinFile, keyType }, 'test', '/'));
      signers.push(loadSigner(join(tmp.dir, keyType))!);
    }
  });
  after(() => {
    for (const s of signers) s.close();
    tmp?.cleanup();
    hsm?.cleanup();
  });

  for (const [i, keyType, sigAlg] of [[0, 'ec-p384', 'ecdsa-with-SHA384'], [1, 'rsa-2048', 'sha256WithRSAEncryption']] as const) {
    it(`Should write a ${keyType} intermediate CSR that openssl verifies, asking for a pathLen-0 signing CA of the trust domain`, async function () {
      const dir = join(tmp.dir, keyType);
      const { csrPem } = await writeHsmIntermediateCsr(dir, signers[i]!, 'example.org');
      expect(readFileSync(join(dir, 'intermediate.csr'), 'utf8')).to.equal(csrPem);
      const r = openssl(['req', '-verify', '-noout', '-text'], csrPem);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.contain(sigAlg);
      const csr = new x509.Pkcs10CertificateRequest(csrPem);
      expect(await csr.verify()).to.equal(true);
      expect(csr.subject).to.equal('CN=Trellis Intermediate CA example.org, O=Trellis');
      const bc = (csr.getExtension('2.5.29.19') as x509.BasicConstraintsExtension);
      expect([bc.ca, bc.pathLength, bc.critical]).to.deep.equal([true, 0, true]);
      const ku = (csr.getExtension('2.5.29.15') as x509.KeyUsagesExtension);
      expect(ku.usages).to.equal(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
      expect((csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension).names.toJSON()).to.deep.equal([{ type: 'url', value: 'spiffe://example.org' }]);
      expect(Buffer.from(csr.publicKey.rawData).equals(signers[i]!.publicKeyDer)).to.equal(true);
    });
  }

  it('Should refuse an invalid trust domain for the CSR', async function () {
    let err: unknown;
    try {
      await writeHsmIntermediateCsr(join(tmp.dir, 'ec-p384'), signers[0]!, 'Not A Domain');
    } catch (e) {
      err = e;
    }
    expect((err as CaError).code).to.equal(CaErrorCode.BAD_SPIFFE_ID);
  });

  it('Should refuse to import an intermediate that is not for the token key, leaving the dir unchanged', async function () {
    const other = join(tmp.dir, 'file-ca');
    await initCertificateAuthority(other, { trustDomain: 'example.org' });
    const dir = join(tmp.dir, 'rsa-2048');
    const before = readdir(dir);
    let err: unknown;
    try {
      importHsmIntermediate(dir, signers[1]!, readFileSync(join(other, 'intermediate.pem'), 'utf8'), readFileSync(join(other, 'root.pem'), 'utf8'));
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(CaError);
    expect((err as CaError).code).to.equal(CaErrorCode.KEY_MISMATCH);
    expect(readdir(dir)).to.deep.equal(before);
  });

  it('Should import an intermediate the root signed from the HSM CSR, and refuse one whose chain lacks that root', async function () {
    const rootDir = join(tmp.dir, 'root');
    await initCertificateAuthority(rootDir, { trustDomain: 'example.org' });
    const strangerDir = join(tmp.dir, 'stranger');
    await initCertificateAuthority(strangerDir, { trustDomain: 'example.org' });
    const dir = join(tmp.dir, 'ec-p384');
    await writeHsmIntermediateCsr(dir, signers[0]!, 'example.org');
    const ext = join(tmp.dir, 'ext');
    writeFileSync(ext, '[v3]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://example.org\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    const out = join(tmp.dir, 'int.pem');
    const r = openssl(['x509', '-req', '-in', join(dir, 'intermediate.csr'), '-CA', join(rootDir, 'root.pem'), '-CAkey', join(rootDir, 'root.key'), '-set_serial', '0x' + randomBytes(12).toString('hex'), '-days', '10', '-extfile', ext, '-extensions', 'v3', '-out', out]);
    expect(r.status, r.stderr).to.equal(0);
    let err: unknown;
    try {
      importHsmIntermediate(dir, signers[0]!, readFileSync(out, 'utf8'), readFileSync(join(strangerDir, 'root.pem'), 'utf8'));
    } catch (e) {
      err = e;
    }
    expect((err as CaError).code).to.equal(CaErrorCode.CHAIN_INVALID);
    const ok = importHsmIntermediate(dir, signers[0]!, readFileSync(out, 'utf8'), readFileSync(join(rootDir, 'root.pem'), 'utf8'));
    expect(ok.trustDomain).to.equal('example.org');
    expect(readdir(dir)).to.include.members(['intermediate.pem', 'chain.pem', 'root.pem', 'signer.yaml']);
    expect(readdir(dir)).not.to.include('intermediate.key');
  });

  it('Should say NOT_CONFIGURED for a CA dir without signer.yaml, and loadSigner returns undefined there', function () {
    const dir = join(tmp.dir, 'file-ca');
    expect(loadSigner(dir)).to.equal(undefined);
    expect(() => requireSigner(dir)).to.throw(HsmError).with.property('code', HsmErrorCode.NOT_CONFIGURED);
  });
});

function readdir(dir: string): string[] {
  return readdirSync(dir).sort();
}
