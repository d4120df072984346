import { expect } from 'chai';
import * as fc from 'fast-check';
import { X509Certificate, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import {
  DerError,
  DerErrorCode,
  DerTag,
  bitString,
  boolean,
  contextExplicit,
  contextImplicit,
  decodeBitString,
  decodeBoolean,
  decodeInteger,
  decodeOid,
  decodeSmallInteger,
  decodeString,
  decodeTime,
  decodeUnsignedIntegerBytes,
  encodeLength,
  expectTlv,
  forEachChild,
  integer,
  namedBits,
  nullValue,
  octetString,
  oid,
  readChildren,
  readTlv,
  readWhole,
  sequence,
  set,
  time,
  utf8String,
  ia5String,
  printableString,
} from '../../src/x509/der';

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).to.be.instanceOf(DerError);
    return (err as DerError).code;
  }
}

describe('DER writer', () => {
  it('encodes lengths in the minimal form', () => {
    expect(encodeLength(0).toString('hex')).to.equal('00');
    expect(encodeLength(127).toString('hex')).to.equal('7f');
    expect(encodeLength(128).toString('hex')).to.equal('8180');
    expect(encodeLength(255).toString('hex')).to.equal('81ff');
    expect(encodeLength(256).toString('hex')).to.equal('820100');
    expect(encodeLength(65536).toString('hex')).to.equal('83010000');
    expect(encodeLength(0x01000000).toString('hex')).to.equal('8401000000');
  });

  const ints: [bigint | number, string][] = [
    [0, '020100'],
    [127, '02017f'],
    [128, '02020080'],
    [256, '02020100'],
    [-1, '0201ff'],
    [-128, '020180'],
    [-129, '0202ff7f'],
    [2n ** 64n, '0209010000000000000000'],
  ];
  for (const [v, hexv] of ints) {
    it(`encodes INTEGER ${v} as ${hexv}`, () => {
      expect(integer(v).toString('hex')).to.equal(hexv);
      expect(decodeInteger(integer(v), readTlv(integer(v), 0))).to.equal(BigInt(v));
    });
  }

  it('encodes a Buffer as an unsigned magnitude, adding the sign pad and dropping leading zeros', () => {
    expect(integer(h('80')).toString('hex')).to.equal('02020080');
    expect(integer(h('0000ff')).toString('hex')).to.equal('020200ff');
    expect(integer(h('0000')).toString('hex')).to.equal('020100');
    expect(integer(h('7f01')).toString('hex')).to.equal('02027f01');
  });

  const oids: [string, string][] = [
    ['1.2.840.10045.2.1', '06072a8648ce3d0201'],
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['2.5.29.17', '0603551d11'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['2.999.3', '0603883703'],
    ['1.2.840.113549.1.1.11', '06092a864886f70d01010b'],
  ];
  for (const [dotted, hexv] of oids) {
    it(`encodes and decodes OID ${dotted}`, () => {
      expect(oid(dotted).toString('hex')).to.equal(hexv);
      const b = h(hexv);
      expect(decodeOid(b, readTlv(b, 0))).to.equal(dotted);
    });
  }

  it('refuses malformed dotted OIDs', () => {
    for (const bad of ['', '1', '3.1', '1.40', '1.2.', '1..2', '1.02', 'a.b']) {
      expect(codeOf(() => oid(bad)), bad).to.equal(DerErrorCode.BAD_OID);
    }
  });

  it('encodes keyUsage named bits with trailing zero bits removed', () => {
    // digitalSignature (0) only: 03 02 07 80
    expect(namedBits([0]).toString('hex')).to.equal('03020780');
    // keyCertSign (5) + cRLSign (6): 03 02 01 06
    expect(namedBits([5, 6]).toString('hex')).to.equal('03020106');
    // digitalSignature + keyEncipherment (2): 03 02 05 a0
    expect(namedBits([0, 2]).toString('hex')).to.equal('030205a0');
    // decipherOnly (8) spills into a second byte: 03 03 07 00 80
    expect(namedBits([8]).toString('hex')).to.equal('0303070080');
  });

  it('encodes times as UTCTime before 2050 and GeneralizedTime from 2050, dropping milliseconds', () => {
    expect(time(new Date('2024-02-29T12:34:56.789Z')).toString('latin1').slice(2)).to.equal('240229123456Z');
    expect(time(new Date('2024-02-29T12:34:56Z'))[0]).to.equal(DerTag.UTC_TIME);
    expect(time(new Date('1950-01-01T00:00:00Z'))[0]).to.equal(DerTag.UTC_TIME);
    expect(time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2)).to.equal('491231235959Z');
    const g = time(new Date('2050-01-01T00:00:00Z'));
    expect(g[0]).to.equal(DerTag.GENERALIZED_TIME);
    expect(g.subarray(2).toString('latin1')).to.equal('20500101000000Z');
    expect(time(new Date('1949-12-31T23:59:59Z'))[0]).to.equal(DerTag.GENERALIZED_TIME);
    expect(codeOf(() => time(new Date('nope')))).to.equal(DerErrorCode.BAD_TIME);
  });

  it('sorts SET OF members as DER requires', () => {
    expect(set(h('0201ff'), h('020101')).toString('hex')).to.equal('3106020101' + '0201ff');
  });

  it('writes context tags, booleans, NULL and strings', () => {
    expect(contextExplicit(0, integer(2)).toString('hex')).to.equal('a003020102');
    expect(contextImplicit(6, Buffer.from('spiffe://a')).toString('hex')).to.equal('860a' + Buffer.from('spiffe://a').toString('hex'));
    expect(contextImplicit(1, h('0101ff'), true).toString('hex')).to.equal('a1030101ff');
    expect(boolean(true).toString('hex')).to.equal('0101ff');
    expect(nullValue().toString('hex')).to.equal('0500');
    expect(utf8String('é').toString('hex')).to.equal('0c02c3a9');
    expect(printableString('US').toString('hex')).to.equal('13025553');
    expect(codeOf(() => printableString('a@b'))).to.equal(DerErrorCode.BAD_STRING);
    expect(codeOf(() => ia5String('é'))).to.equal(DerErrorCode.BAD_STRING);
  });

  it('encodes long contents with a multi-byte length that the reader reads back', () => {
    const big = octetString(Buffer.alloc(70000, 7));
    const t = readWhole(big, DerTag.OCTET_STRING);
    expect(t.headerLength).to.equal(5);
    expect(t.length).to.equal(70000);
  });
});

describe('DER reader', () => {
  it('locates a TLV and its children', () => {
    const buf = sequence(integer(5), sequence(boolean(true)), octetString(h('0102')));
    const top = readWhole(buf, DerTag.SEQUENCE, 'top');
    expect(top).to.include({ tag: 0x30, offset: 0, headerLength: 2, start: 2, end: buf.length });
    const kids = readChildren(buf, top);
    expect(kids.map((k) => k.tag)).to.deep.equal([0x02, 0x30, 0x04]);
    expect(decodeSmallInteger(buf, kids[0]!)).to.equal(5);
    expect(decodeBoolean(buf, readChildren(buf, kids[1]!)[0]!)).to.equal(true);
    const seen: number[] = [];
    forEachChild(buf, top, (c, i) => {
      seen.push(c.tag);
      return i < 1;
    });
    expect(seen).to.deep.equal([0x02, 0x30]);
  });

  const malformed: [string, string, string][] = [
    ['empty input', '', DerErrorCode.TRUNCATED],
    ['a tag with no length', '30', DerErrorCode.TRUNCATED],
    ['contents shorter than announced', '300302', DerErrorCode.TRUNCATED],
    ['an indefinite length', '3080020100', DerErrorCode.INDEFINITE_LENGTH],
    ['a long-form length under 128', '04810100', DerErrorCode.NON_MINIMAL_LENGTH],
    ['a long-form length with a leading zero byte', '0482008000', DerErrorCode.NON_MINIMAL_LENGTH],
    ['a five-byte length', '04850000000001', DerErrorCode.LENGTH_TOO_LARGE],
    ['a high tag number', '1f2200', DerErrorCode.HIGH_TAG_NUMBER],
  ];
  for (const [what, hexv, code] of malformed) {
    it(`rejects ${what} with ${code}`, () => {
      expect(codeOf(() => readTlv(h(hexv), 0))).to.equal(code);
    });
  }

  it('rejects a child that runs past its parent', () => {
    const buf = h('3003 0402 0102 03');
    const top = readTlv(buf, 0);
    expect(codeOf(() => readChildren(buf, top))).to.equal(DerErrorCode.TRUNCATED);
  });

  it('rejects trailing bytes after a whole value and a wrong tag, naming the field', () => {
    expect(codeOf(() => readWhole(h('020101ff')))).to.equal(DerErrorCode.TRAILING_DATA);
    try {
      expectTlv(h('020101'), 0, DerTag.SEQUENCE, 'tbsCertificate');
      expect.fail('should throw');
    } catch (err) {
      expect((err as DerError).code).to.equal(DerErrorCode.UNEXPECTED_TAG);
      expect((err as DerError).details).to.include({ field: 'tbsCertificate', offset: 0 });
    }
  });

  it('rejects non-minimal and empty INTEGERs', () => {
    for (const bad of ['0200', '02020001', '0202ff80']) {
      const b = h(bad);
      expect(codeOf(() => decodeInteger(b, readTlv(b, 0))), bad).to.equal(DerErrorCode.BAD_INTEGER);
    }
    const neg = h('0201ff');
    expect(codeOf(() => decodeSmallInteger(neg, readTlv(neg, 0)))).to.equal(DerErrorCode.INTEGER_OUT_OF_RANGE);
  });

  it('returns serial magnitude bytes without the sign pad', () => {
    const b = integer(h('8001'));
    expect(decodeUnsignedIntegerBytes(b, readTlv(b, 0)).toString('hex')).to.equal('8001');
  });

  it('rejects bad BOOLEANs, BIT STRINGs and OIDs', () => {
    const cases: [string, (b: Buffer) => unknown, string][] = [
      ['010101', (b) => decodeBoolean(b, readTlv(b, 0)), DerErrorCode.BAD_BOOLEAN],
      ['0300', (b) => decodeBitString(b, readTlv(b, 0)), DerErrorCode.BAD_BIT_STRING],
      ['03020880', (b) => decodeBitString(b, readTlv(b, 0)), DerErrorCode.BAD_BIT_STRING],
      ['03020181', (b) => decodeBitString(b, readTlv(b, 0)), DerErrorCode.BAD_BIT_STRING],
      ['0600', (b) => decodeOid(b, readTlv(b, 0)), DerErrorCode.BAD_OID],
      ['06022a86', (b) => decodeOid(b, readTlv(b, 0)), DerErrorCode.BAD_OID],
      ['06032a8001', (b) => decodeOid(b, readTlv(b, 0)), DerErrorCode.BAD_OID],
    ];
    for (const [hexv, fn, code] of cases) expect(codeOf(() => fn(h(hexv))), hexv).to.equal(code);
  });

  it('decodes UTCTime and GeneralizedTime and refuses what RFC 5280 forbids', () => {
    const t = (tag: number, s: string): [Buffer, ReturnType<typeof readTlv>] => {
      const b = Buffer.concat([Buffer.from([tag, s.length]), Buffer.from(s, 'latin1')]);
      return [b, readTlv(b, 0)];
    };
    expect(decodeTime(...t(DerTag.UTC_TIME, '491231235959Z')).toISOString()).to.equal('2049-12-31T23:59:59.000Z');
    expect(decodeTime(...t(DerTag.UTC_TIME, '500101000000Z')).toISOString()).to.equal('1950-01-01T00:00:00.000Z');
    expect(decodeTime(...t(DerTag.GENERALIZED_TIME, '99991231235959Z')).toISOString()).to.equal('9999-12-31T23:59:59.000Z');
    for (const bad of ['2402301200Z', '240230120000Z', '241301120000Z', '240101120000+', '2401011200000']) {
      expect(codeOf(() => decodeTime(...t(DerTag.UTC_TIME, bad))), bad).to.equal(DerErrorCode.BAD_TIME);
    }
    expect(codeOf(() => decodeTime(...t(DerTag.GENERALIZED_TIME, '20240101120000.5Z')))).to.equal(DerErrorCode.BAD_TIME);
  });

  it('decodes the X.509 string types', () => {
    const bmp = Buffer.from([DerTag.BMP_STRING, 4, 0x00, 0x41, 0x00, 0xe9]);
    expect(decodeString(bmp, readTlv(bmp, 0))).to.equal('Aé');
    const u = utf8String('żółw');
    expect(decodeString(u, readTlv(u, 0))).to.equal('żółw');
    const badUtf8 = h('0c01ff');
    expect(codeOf(() => decodeString(badUtf8, readTlv(badUtf8, 0)))).to.equal(DerErrorCode.BAD_STRING);
  });

  it('round-trips any bigint through INTEGER', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }), (v) => {
        const enc = integer(v);
        return decodeInteger(enc, readWhole(enc, DerTag.INTEGER)) === v;
      }),
    );
  });

  it('round-trips any OID through its encoding', () => {
    const arc = fc.bigInt({ min: 0n, max: 2n ** 70n });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(arc, { maxLength: 8 }), (a, b, rest) => {
        const dotted = [a, b, ...rest].join('.');
        const enc = oid(dotted);
        return decodeOid(enc, readWhole(enc, DerTag.OID)) === dotted;
      }),
    );
  });

  it('round-trips any second-resolution date in 0001-9999 through time()', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1, 0, 1) / 1000, max: Date.UTC(9999, 11, 31, 23, 59, 59) / 1000 }), (s) => {
        const d = new Date(s * 1000);
        const enc = time(d);
        return decodeTime(enc, readWhole(enc)).getTime() === d.getTime();
      }),
    );
  });

  it('never throws anything but DerError on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const b = Buffer.from(bytes);
        try {
          const t = readTlv(b, 0);
          if (t.tag & 0x20) readChildren(b, t);
        } catch (err) {
          if (!(err instanceof DerError)) throw err;
        }
      }),
    );
  });
});

describe('DER writer against node:crypto', () => {
  it('builds a self-signed certificate that node:crypto parses and verifies', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const ecdsaSha256 = sequence(oid('1.2.840.10045.4.3.2'));
    const name = sequence(set(sequence(oid('2.5.4.3'), utf8String('DER Test'))));
    const notBefore = new Date('2024-01-02T03:04:05Z');
    const notAfter = new Date('2060-01-02T03:04:05Z');
    const san = sequence(contextImplicit(6, Buffer.from('spiffe://example.org/der')));
    const tbs = sequence(
      contextExplicit(0, integer(2)),
      integer(h('7a3f0011223344556677')),
      ecdsaSha256,
      name,
      sequence(time(notBefore), time(notAfter)),
      name,
      spki,
      contextExplicit(
        3,
        sequence(
          sequence(oid('2.5.29.19'), boolean(true), octetString(sequence(boolean(true)))),
          sequence(oid('2.5.29.15'), boolean(true), octetString(namedBits([5, 6]))),
          sequence(oid('2.5.29.17'), octetString(san)),
        ),
      ),
    );
    const sig = sign('sha256', tbs, privateKey);
    const der = sequence(tbs, ecdsaSha256, bitString(sig));

    const cert = new X509Certificate(der);
    expect(cert.verify(createPublicKey({ key: spki, format: "der", type: "spki" }))).to.equal(true);
    expect(cert.serialNumber.toLowerCase()).to.equal('7a3f0011223344556677');
    expect(new Date(cert.validFrom).getTime()).to.equal(notBefore.getTime());
    expect(new Date(cert.validTo).getTime()).to.equal(notAfter.getTime());
    expect(cert.subject).to.equal('CN=DER Test');
    expect(cert.ca).to.equal(true);
    expect(cert.subjectAltName).to.equal('URI:spiffe://example.org/der');

    // And our reader walks back what node accepted.
    const top = readWhole(der, DerTag.SEQUENCE, 'certificate');
    const [tbsT, , sigT] = readChildren(der, top);
    expect(der.subarray(tbsT!.offset, tbsT!.end).equals(tbs)).to.equal(true);
    expect(decodeBitString(der, sigT!).bytes.equals(sig)).to.equal(true);
    const fields = readChildren(der, tbsT!);
    expect(decodeUnsignedIntegerBytes(der, fields[1]!).toString('hex')).to.equal('7a3f0011223344556677');
    const validity = readChildren(der, fields[4]!);
    expect(decodeTime(der, validity[0]!).getTime()).to.equal(notBefore.getTime());
    expect(validity[1]!.tag).to.equal(DerTag.GENERALIZED_TIME);
    expect(decodeTime(der, validity[1]!).getTime()).to.equal(notAfter.getTime());
  });
});
