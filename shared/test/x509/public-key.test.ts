import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { samePublicKey, spkiDer } from '../../src/x509/public-key';

describe('Public-key comparison', function () {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ec2 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

  it('Should say a key is itself, from its private half and from its public half', function () {
    expect(samePublicKey(ec.publicKey, ec.privateKey)).to.equal(true);
    expect(spkiDer(ec.privateKey).equals(spkiDer(ec.publicKey))).to.equal(true);
  });

  it('Should tell two keys of the same type apart', function () {
    expect(samePublicKey(ec.publicKey, ec2.publicKey)).to.equal(false);
  });

  it('Should compare keys of different types as different, either way round', function () {
    expect(samePublicKey(ec.publicKey, rsa.publicKey)).to.equal(false);
    expect(samePublicKey(rsa.privateKey, ec.publicKey)).to.equal(false);
  });
});
