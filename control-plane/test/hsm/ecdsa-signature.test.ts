import { expect } from 'chai';
import { generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { ecdsaRawToDer, ecPointFromAttribute } from '../../src/hsm/ecdsa-signature';

describe('ECDSA encodings between PKCS#11 and X.509', function () {
  const cases: Array<[string, string, string]> = [
    ['Should encode small r and s as minimal INTEGERs', '00'.repeat(31) + '01' + '00'.repeat(31) + '02', '3006020101020102'],
    ['Should prefix 0x00 when the high bit of r or s is set', '80' + '00'.repeat(31) + 'ff' + '00'.repeat(31),
      '3046022100' + '80' + '00'.repeat(31) + '022100' + 'ff' + '00'.repeat(31)],
    ['Should strip leading zero bytes but keep a 0x00 that guards a high bit', '0080' + '11'.repeat(30) + '0001' + '22'.repeat(30),
      '3043022000' + '80' + '11'.repeat(30) + '021f01' + '22'.repeat(30)],
    ['Should encode an all-zero half as INTEGER 0', '00'.repeat(32) + '01'.repeat(32), '3025020100022001' + '01'.repeat(31)],
  ];
  for (const [name, raw, der] of cases) {
    it(name, function () {
      expect(ecdsaRawToDer(Buffer.from(raw, 'hex'))!.toString('hex')).to.equal(der);
    });
  }

  it('Should refuse a raw signature of odd or zero length', function () {
    expect(ecdsaRawToDer(Buffer.alloc(0))).to.equal(undefined);
    expect(ecdsaRawToDer(Buffer.alloc(63))).to.equal(undefined);
  });

  for (const curve of ['P-256', 'P-384'] as const) {
    it(`Should turn node:crypto ${curve} raw (IEEE P1363) signatures into DER that verifies, 100 times`, function () {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      const hash = curve === 'P-256' ? 'sha256' : 'sha384';
      for (let i = 0; i < 100; i++) {
        const data = Buffer.from(`message ${i}`);
        const raw = cryptoSign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        const der = ecdsaRawToDer(raw)!;
        expect(cryptoVerify(hash, data, publicKey, der), `signature ${i}`).to.equal(true);
      }
    });
  }

  it('Should read CKA_EC_POINT both as the DER OCTET STRING the spec prescribes and as a bare point', function () {
    const p256 = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 7)]);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x41]), p256]), 32)).to.deep.equal(p256);
    expect(ecPointFromAttribute(p256, 32)).to.deep.equal(p256);
    const p384 = Buffer.concat([Buffer.from([4]), Buffer.alloc(96, 9)]);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x61]), p384]), 48)).to.deep.equal(p384);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x81, 0x61]), p384]), 48)).to.deep.equal(p384);
  });

  it('Should refuse a compressed, truncated or wrong-curve point', function () {
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x21, 0x02]), Buffer.alloc(32)]), 32)).to.equal(undefined);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04, 0x41, 0x04]), Buffer.alloc(60)]), 32)).to.equal(undefined);
    expect(ecPointFromAttribute(Buffer.concat([Buffer.from([0x04]), Buffer.alloc(96)]), 32)).to.equal(undefined);
  });
});
