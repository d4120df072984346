import { expect } from 'chai';
import { hasErrorCode } from '../../src/errors/trellis-error';
import { normaliseSerial, randomSerial, randomSerialHex } from '../../src/x509/serial';

describe('certificate serials (one form, one generator)', () => {
  const same: Array<[string, string]> = [
    ['00:0A:1b', 'a1b'],
    ['0x0a1b', 'a1b'],
    ['0A 1B', 'a1b'],
    ['  7A3F00  ', '7a3f00'],
    ['00', '0'],
    ['0'.repeat(10) + 'f'.repeat(40), 'f'.repeat(40)],
  ];
  for (const [input, want] of same) {
    it(`Should write ${JSON.stringify(input)} as ${want}`, () => {
      expect(normaliseSerial(input)).to.equal(want);
    });
  }

  const bad: Array<[string, string]> = [
    ['not hex', 'zz'],
    ['empty', ''],
    ['only separators', ':::'],
    ['longer than 20 octets', 'f'.repeat(41)],
  ];
  for (const [what, input] of bad) {
    it(`Should refuse a serial that is ${what} (TRELLIS_X509_BAD_SERIAL)`, () => {
      expect(() => normaliseSerial(input)).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_X509_BAD_SERIAL'));
    });
  }

  it('Should make positive, non-zero 126-bit serials already in the one form, even from an all-zero or all-one source', () => {
    expect(randomSerialHex(() => new Uint8Array(16))).to.equal('40' + '00'.repeat(15));
    expect(randomSerial(() => new Uint8Array(16).fill(0xff))[0]).to.equal(0x7f);
    for (let i = 0; i < 64; i++) {
      const s = randomSerialHex();
      expect(s).to.match(/^[4-7][0-9a-f]{31}$/);
      expect(normaliseSerial(s)).to.equal(s);
    }
  });
});
