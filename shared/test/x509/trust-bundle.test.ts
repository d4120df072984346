import { expect } from 'chai';
import * as fc from 'fast-check';
import { generateKeyPairSync, sign } from 'node:crypto';
import { createTrustBundle, formatPemBundle, formatSpiffeBundle, parsePemBundle, parseSpiffeBundle } from '../../src/x509/trust-bundle';
import { parseCertificate, type CertificateFacts } from '../../src/x509/certificate-facts';
import { X509Error, X509ErrorCode } from '../../src/x509/x509-error';
import { Oid } from '../../src/x509/oids';
import * as der from '../../src/x509/der';
import { CORPORA, describeWith, itWith, readCorpusFile, readCorpusJson } from '@trellis/testkit';

interface Manifest {
  x509bundle_files: Record<string, { expected: string; num_authorities?: number }>;
  spiffebundle_files: Record<
    string,
    { expected: string; x509_authorities?: number; jwt_authorities?: number; wit_authorities?: number; refresh_hint_seconds?: number; sequence_number?: number }
  >;
  trust_domain_used_by_go_spiffe_bundle_tests: string;
}
let cachedManifest: Manifest | undefined;
/** The go-spiffe manifest, read inside suites gated on the corpora. */
const goSpiffe = (): Manifest => (cachedManifest ??= readCorpusJson<Manifest>('go-spiffe', 'manifest.json'));
/** The trust domain go-spiffe's bundle tests use. */
const TD = 'domain.test';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(X509Error);
    return (err as X509Error).code;
  }
}

/** go-spiffe's error for each failing file, as our code. */
const EXPECTED_ERROR: Record<string, string> = {
  'x509bundle/not-pem.pem': X509ErrorCode.NOT_PEM,
  'x509bundle/corrupted.pem': X509ErrorCode.MALFORMED_CERTIFICATE,
  'spiffebundle/spiffebundle_missing_kid.json': X509ErrorCode.BUNDLE_MISSING_KID,
  'spiffebundle/spiffebundle_no_keys.json': X509ErrorCode.BUNDLE_NO_KEYS,
  'spiffebundle/spiffebundle_multiple_x509.json': X509ErrorCode.BUNDLE_X5C_COUNT,
};

function makeCa(cn: string): { facts: CertificateFacts; jwk: Record<string, unknown> } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const alg = der.sequence(der.oid(Oid.ecdsaWithSha256));
  const name = der.sequence(der.set(der.sequence(der.oid(Oid.commonName), der.utf8String(cn))));
  const ext = der.contextExplicit(
    3,
    der.sequence(
      der.sequence(der.oid(Oid.basicConstraints), der.boolean(true), der.octetString(der.sequence(der.boolean(true)))),
      der.sequence(der.oid(Oid.keyUsage), der.boolean(true), der.octetString(der.namedBits([5, 6]))),
    ),
  );
  const tbs = der.sequence(
    der.contextExplicit(0, der.integer(2)),
    der.integer(7),
    alg,
    name,
    der.sequence(der.time(new Date('2024-01-01T00:00:00Z')), der.time(new Date('2034-01-01T00:00:00Z'))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    ext,
  );
  const facts = parseCertificate(der.sequence(tbs, alg, der.bitString(sign('sha256', tbs, privateKey))));
  return { facts, jwk: publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

describeWith(CORPORA, 'PEM trust bundles against go-spiffe x509bundle cases', () => {
  it('uses the trust domain go-spiffe\'s bundle tests use', () => {
    expect(goSpiffe().trust_domain_used_by_go_spiffe_bundle_tests).to.equal(TD);
  });
  for (const [file, meta] of Object.entries(goSpiffe().x509bundle_files)) {
    const want = EXPECTED_ERROR[file];
    if (meta.expected.startsWith('ok')) {
      it(`reads ${file} with ${meta.num_authorities} authorities`, () => {
        const b = parsePemBundle(TD, readCorpusFile('go-spiffe', ...file.split('/')), file);
        expect(b.trustDomain).to.equal(TD);
        expect(b.x509Authorities).to.have.length(meta.num_authorities!);
      });
    } else {
      it(`refuses ${file} with ${want}`, () => {
        expect(want, `no expected code for ${file}`).to.be.a('string');
        expect(code(() => parsePemBundle(TD, readCorpusFile('go-spiffe', ...file.split('/')), file))).to.equal(want);
      });
    }
  }

  it('drops duplicate certificates', () => {
    const pem = readCorpusFile('go-spiffe', 'x509bundle', 'cert.pem').toString();
    expect(parsePemBundle(TD, pem + pem).x509Authorities).to.have.length(1);
  });

  it('round-trips through formatPemBundle', () => {
    const b = parsePemBundle(TD, readCorpusFile('go-spiffe', 'x509bundle', 'certs.pem'));
    const again = parsePemBundle(TD, formatPemBundle(b));
    expect(again.x509Authorities.map((c) => c.serialHex)).to.deep.equal(b.x509Authorities.map((c) => c.serialHex));
  });

  it('refuses an invalid trust domain', () => {
    expect(() => parsePemBundle('Bad Domain', '')).to.throw().with.property('code', 'TRELLIS_SPIFFE_ID_BAD_TRUST_DOMAIN_CHAR');
  });
});

describe('SPIFFE bundle documents', () => {
  describeWith(CORPORA, 'against go-spiffe spiffebundle cases', () => {
  for (const [file, meta] of Object.entries(goSpiffe().spiffebundle_files)) {
    const want = EXPECTED_ERROR[file];
    if (meta.expected === 'ok') {
      it(`reads ${file} with ${meta.x509_authorities} X.509 and ${meta.jwt_authorities} JWT authorities`, () => {
        const b = parseSpiffeBundle(TD, readCorpusFile('go-spiffe', ...file.split('/')), file);
        expect(b.x509Authorities).to.have.length(meta.x509_authorities!);
        expect(b.jwtAuthorities).to.have.length(meta.jwt_authorities!);
        expect(b.refreshHintSeconds).to.equal(meta.refresh_hint_seconds);
        expect(b.sequenceNumber).to.equal(meta.sequence_number);
        expect(b.ignored).to.have.length(meta.wit_authorities ?? 0);
      });
    } else {
      it(`refuses ${file} with ${want}`, () => {
        expect(want, `no expected code for ${file}`).to.be.a('string');
        expect(code(() => parseSpiffeBundle(TD, readCorpusFile('go-spiffe', ...file.split('/')), file))).to.equal(want);
      });
    }
  }

  it('round-trips a corpus bundle through formatSpiffeBundle', () => {
    const b = parseSpiffeBundle(TD, readCorpusFile('go-spiffe', 'spiffebundle', 'spiffebundle_valid_2.json'));
    const again = parseSpiffeBundle(TD, formatSpiffeBundle(b));
    expect(again.x509Authorities.map((c) => c.der.toString('hex'))).to.deep.equal(b.x509Authorities.map((c) => c.der.toString('hex')));
    expect(again.jwtAuthorities).to.deep.equal(b.jwtAuthorities);
    expect(again.sequenceNumber).to.equal(1);
    expect(again.refreshHintSeconds).to.equal(60);
  });
  });

  it('writes x509-svid entries without kid and with exactly one x5c certificate', () => {
    const ca = makeCa('root');
    const doc = JSON.parse(formatSpiffeBundle(createTrustBundle('example.org', [ca.facts], { sequenceNumber: 3, refreshHintSeconds: 300 })));
    expect(doc.keys).to.have.length(1);
    expect(doc.keys[0]).to.include({ use: 'x509-svid', kty: 'EC', crv: 'P-256', x: ca.jwk['x'], y: ca.jwk['y'] });
    expect(doc.keys[0]).to.not.have.property('kid');
    expect(doc.keys[0].x5c).to.deep.equal([ca.facts.der.toString('base64')]);
    expect(doc).to.include({ spiffe_sequence: 3, spiffe_refresh_hint: 300 });
  });

  describe('fails closed on bad documents', () => {
    const ca = makeCa('root');
    const other = makeCa('other');
    const x509Entry = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ use: 'x509-svid', ...ca.jwk, x5c: [ca.facts.der.toString('base64')], ...extra });
    const jwtEntry = (kid: string): Record<string, unknown> => ({ use: 'jwt-svid', kid, ...other.jwk });
    const cases: [string, unknown, string][] = [
      ['invalid JSON', '{"keys": [', X509ErrorCode.BUNDLE_BAD_JSON],
      ['a JSON array', [], X509ErrorCode.BUNDLE_BAD_JSON],
      ['keys that is not an array', { keys: {} }, X509ErrorCode.BUNDLE_BAD_JSON],
      ['an entry that is not an object', { keys: [7] }, X509ErrorCode.BUNDLE_BAD_JSON],
      ['a negative sequence', { keys: [], spiffe_sequence: -1 }, X509ErrorCode.BUNDLE_BAD_FIELD],
      ['a fractional refresh hint', { keys: [], spiffe_refresh_hint: 1.5 }, X509ErrorCode.BUNDLE_BAD_FIELD],
      ['a string refresh hint', { keys: [], spiffe_refresh_hint: '60' }, X509ErrorCode.BUNDLE_BAD_FIELD],
      ['an x5c that is not base64', { keys: [x509Entry({ x5c: ['***'] })] }, X509ErrorCode.BUNDLE_BAD_X5C],
      ['an x5c that is not a certificate', { keys: [x509Entry({ x5c: ['AAAA'] })] }, X509ErrorCode.BUNDLE_BAD_X5C],
      ['a JWK key that is not the x5c key', { keys: [x509Entry({ x: other.jwk['x'], y: other.jwk['y'] })] }, X509ErrorCode.BUNDLE_KEY_MISMATCH],
      ['a JWK with a broken point', { keys: [x509Entry({ x: 'AAAA' })] }, X509ErrorCode.BUNDLE_BAD_KEY],
      ['a private key parameter', { keys: [x509Entry({ d: 'AAAA' })] }, X509ErrorCode.BUNDLE_PRIVATE_KEY],
      ['an empty kid', { keys: [jwtEntry('')] }, X509ErrorCode.BUNDLE_MISSING_KID],
      ['a duplicate kid', { keys: [jwtEntry('a'), jwtEntry('a')] }, X509ErrorCode.BUNDLE_DUPLICATE_KID],
    ];
    for (const [what, doc, want] of cases) {
      it(`refuses ${what} with ${want}`, () => {
        const text = typeof doc === 'string' ? doc : JSON.stringify(doc);
        expect(code(() => parseSpiffeBundle('example.org', text, 'bundle.json'))).to.equal(want);
      });
    }

    it('names the entry index in the error', () => {
      try {
        parseSpiffeBundle('example.org', JSON.stringify({ keys: [x509Entry(), jwtEntry('')] }), 'bundle.json');
        expect.fail('should throw');
      } catch (err) {
        expect((err as X509Error).details).to.include({ source: 'bundle.json', index: 1 });
      }
    });

    it('reads an empty key set as a bundle that trusts nothing', () => {
      const b = parseSpiffeBundle('example.org', '{"keys": []}');
      expect(b.x509Authorities).to.have.length(0);
      expect(b.jwtAuthorities).to.have.length(0);
    });

    it('ignores entries with a missing or unknown use or kty, or no x5c, and lists them', () => {
      const b = parseSpiffeBundle(
        'example.org',
        JSON.stringify({
          keys: [
            { ...ca.jwk, x5c: [ca.facts.der.toString('base64')] },
            x509Entry({ use: 'X509-SVID' }),
            x509Entry({ kty: 'oct' }),
            x509Entry({ x5c: [] }),
            x509Entry(),
          ],
        }),
      );
      expect(b.x509Authorities).to.have.length(1);
      expect(b.ignored.map((i) => i.index)).to.deep.equal([0, 1, 2, 3]);
    });

    it('returns a frozen bundle', () => {
      const b = parseSpiffeBundle('example.org', JSON.stringify({ keys: [x509Entry()] }));
      expect(Object.isFrozen(b)).to.equal(true);
      expect(Object.isFrozen(b.x509Authorities)).to.equal(true);
    });
  });
});

describe('Trust bundle parsing on hostile input', () => {

  it('only ever throws X509Error for random JSON documents', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          parseSpiffeBundle('example.org', JSON.stringify(v));
        } catch (err) {
          if (!(err instanceof X509Error)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('only ever throws X509Error for random entries in the keys array', () => {
    fc.assert(
      fc.property(fc.array(fc.dictionary(fc.constantFrom('use', 'kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'x5c'), fc.jsonValue())), (keys) => {
        try {
          parseSpiffeBundle('example.org', JSON.stringify({ keys }));
        } catch (err) {
          if (!(err instanceof X509Error)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });

  itWith(CORPORA, 'only ever throws X509Error when a valid document is cut short or has a byte changed', () => {
    const valid = readCorpusFile('go-spiffe', 'spiffebundle', 'spiffebundle_valid_2.json').toString('utf8');
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 32, max: 126 }), fc.boolean(), (at, ch, cut) => {
        const text = cut ? valid.slice(0, at) : valid.slice(0, at) + String.fromCharCode(ch) + valid.slice(at + 1);
        try {
          parseSpiffeBundle('example.org', text);
        } catch (err) {
          if (!(err instanceof X509Error)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });
});
