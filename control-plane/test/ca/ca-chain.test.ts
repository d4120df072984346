import 'reflect-metadata';
import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { certificateHasKey, readCaCertificate } from '../../src/ca/ca-chain';
import { CA_FILES } from '../../src/ca/ca-dir';
import { pemCertificates } from '../../src/ca/pem';
import { initCertificateAuthority } from '../../src/ca/ca-setup';

describe('Checking which key a CA certificate is for', function () {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = makeTmpDir('trellis-ca-chain-');
  });
  after(() => tmp?.cleanup());

  it('Should say an EC intermediate is not for an RSA key, and leave the next CA creation in the process working', async function () {
    // KeyObject.equals across key types leaves "different key types" on OpenSSL's error queue;
    // the next CA created in the process then failed to import its fresh key (Node 20 and 24).
    const dir = join(tmp.dir, 'first');
    await initCertificateAuthority(dir, { trustDomain: 'example.org' });
    const file = join(dir, CA_FILES.intermediateCert);
    const intermediate = readCaCertificate(pemCertificates(readFileSync(file, 'utf8'), file)[0]!, file);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(certificateHasKey(intermediate, rsa.publicKey)).to.equal(false);
    await initCertificateAuthority(join(tmp.dir, 'second'), { trustDomain: 'example.org' });
  });
});
