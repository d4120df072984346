import { expect } from 'chai';
import { generateKeyPairSync, sign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCertificate, parseCertificates, type CertificateFacts } from '../../src/x509/certificate-facts';
import { pemToDer } from '../../src/x509/pem';
import { X509Error } from '../../src/x509/x509-error';
import { Oid } from '../../src/x509/oids';
import * as der from '../../src/x509/der';
import {
  SvidError,
  SvidErrorCode,
  assertSvidChain,
  validateLeafSvid,
  validateSigningCertificate,
  validateSvidChain,
} from '../../src/identity/x509-svid';
import { parseX509SvidPem } from '../../src/identity/x509-svid-pem';
import { CORPORA, describeWith, readCorpusFile, readCorpusJson } from '@trellis/testkit';

interface ParseCase {
  name: string;
  certs_file: string;
  key_file: string;
  expected: 'ok' | 'error';
  spiffe_id?: string;
  num_certs?: number;
  go_spiffe_error_contains?: string;
}
interface FileMeta {
  expected: string;
  reason_code?: string;
  spiffe_id?: string;
}
interface Manifest {
  x509svid_parse_cases: ParseCase[];
  x509svid_files: Record<string, FileMeta>;
}

let cachedManifest: Manifest | undefined;
/** The go-spiffe manifest, read inside suites gated on the corpora. */
const goSpiffe = (): Manifest => (cachedManifest ??= readCorpusJson<Manifest>('go-spiffe', 'manifest.json'));
const corpus = (rel: string): Buffer => readCorpusFile('go-spiffe', ...rel.split('/'));
const ECDSA_TIME = new Date('2020-03-24T14:30:00Z');
const RSA_TIME = new Date('2021-01-01T00:00:00Z');

/** The corpus's reason codes, as our error codes. */
const REASON: Record<string, string> = {
  MALFORMED_CERTIFICATE: 'TRELLIS_X509_MALFORMED_CERTIFICATE',
  NOT_PEM: 'TRELLIS_X509_NOT_PEM',
  MALFORMED_PRIVATE_KEY: SvidErrorCode.MALFORMED_PRIVATE_KEY,
  LEAF_IS_CA: SvidErrorCode.LEAF_IS_CA,
  NO_URI_SAN: SvidErrorCode.NO_URI_SAN,
  LEAF_MISSING_DIGITAL_SIGNATURE: SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE,
  SIGNING_CERT_NOT_CA: SvidErrorCode.SIGNING_CERT_NOT_CA,
};

/** go-spiffe's Parse error for each case, as our code. */
const PARSE_CASE_CODE: Record<string, string> = {
  'Missing certificate (key file given as certs)': SvidErrorCode.NO_CERTIFICATES,
  'Missing private key (cert file given as key)': SvidErrorCode.NO_PRIVATE_KEY,
  'Private key not PEM': 'TRELLIS_X509_NOT_PEM',
  'Certificate not PEM': 'TRELLIS_X509_NOT_PEM',
  'Corrupt private key': SvidErrorCode.MALFORMED_PRIVATE_KEY,
  'Corrupt certificate': 'TRELLIS_X509_MALFORMED_CERTIFICATE',
  'Certificate does not match private key': SvidErrorCode.KEY_MISMATCH,
  'Certificate without SPIFFE ID': SvidErrorCode.NO_URI_SAN,
  'Leaf certificate with CA flag set to true': SvidErrorCode.LEAF_IS_CA,
  'Leaf certificate without digitalSignature as key usage': SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE,
  'Signing certificate without CA flag': SvidErrorCode.SIGNING_CERT_NOT_CA,
};

function errCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err instanceof SvidError || err instanceof X509Error, String(err)).to.equal(true);
    return (err as SvidError).code;
  }
}

describeWith(CORPORA, 'X.509-SVID loading against go-spiffe x509svid.Parse cases', () => {
  for (const c of goSpiffe().x509svid_parse_cases) {
    if (c.expected === 'ok') {
      it(`loads "${c.name}" as ${c.spiffe_id} with ${c.num_certs} certificate(s)`, () => {
        const svid = parseX509SvidPem(corpus(c.certs_file), corpus(c.key_file));
        expect(svid.spiffeId.toString()).to.equal(c.spiffe_id);
        expect(svid.certificates).to.have.length(c.num_certs!);
        expect(svid.privateKey.type).to.equal('private');
      });
    } else {
      const want = PARSE_CASE_CODE[c.name];
      it(`refuses "${c.name}" with ${want}`, () => {
        expect(want, `no expected code for case "${c.name}"`).to.be.a('string');
        expect(errCode(() => parseX509SvidPem(corpus(c.certs_file), corpus(c.key_file)))).to.equal(want);
      });
    }
  }

  it('still loads a good SVID right after refusing a key of another type (no stale OpenSSL error)', () => {
    const mismatch = (): unknown => parseX509SvidPem(corpus('x509svid/good-leaf-and-intermediate.pem'), corpus('x509svid/key-pkcs8-rsa.pem'));
    expect(errCode(mismatch)).to.equal(SvidErrorCode.KEY_MISMATCH);
    expect(parseX509SvidPem(corpus('x509svid/good-leaf-only.pem'), corpus('x509svid/key-pkcs8-rsa.pem')).spiffeId.path).to.equal('/workload-1');
  });

  it('never puts key material in the error for a corrupt key', () => {
    try {
      parseX509SvidPem(corpus('x509svid/good-leaf-only.pem'), corpus('x509svid/corrupt-key.pem'), { keySource: 'svid.key' });
      expect.fail('should throw');
    } catch (err) {
      const e = err as SvidError;
      expect(e.code).to.equal(SvidErrorCode.MALFORMED_PRIVATE_KEY);
      expect(e.cause).to.equal(undefined);
      expect(JSON.stringify(e.toJSON())).to.not.match(/CORRUPT|Q09SUlVQVA/);
      expect(e.message).to.contain('svid.key');
    }
  });
});

describeWith(CORPORA, 'X.509-SVID profile checks against the go-spiffe certificate files', () => {
  for (const [file, meta] of Object.entries(goSpiffe().x509svid_files)) {
    if (!file.endsWith('.pem') || meta.expected === 'key') continue;
    if (meta.reason_code === 'MALFORMED_CERTIFICATE' || meta.reason_code === 'MALFORMED_PRIVATE_KEY' || meta.reason_code === 'NOT_PEM') continue;
    const want = meta.expected === 'valid' ? 'ok' : REASON[meta.reason_code!];
    it(`${meta.expected === 'valid' ? 'accepts' : 'rejects'} the chain in ${file}${want === 'ok' ? '' : ` with ${want}`}`, () => {
      expect(want, `no mapping for ${meta.reason_code}`).to.be.a('string');
      const certs = parseCertificates(pemToDer(corpus(file)));
      const [leaf, ...rest] = certs as [CertificateFacts, ...CertificateFacts[]];
      const now = leaf.keyType.startsWith('ec') ? ECDSA_TIME : RSA_TIME;
      const v = validateSvidChain(leaf, rest, { now });
      if (want === 'ok') {
        expect(v).to.deep.include({ ok: true });
        expect(v.ok && v.spiffeId.toString()).to.equal(meta.spiffe_id);
      } else {
        expect(v.ok).to.equal(false);
        expect(!v.ok && v.code).to.equal(want);
      }
    });
  }

  it('accepts the go-spiffe intermediate as a signing certificate with the trust domain ID', () => {
    const [, inter] = parseCertificates(pemToDer(corpus('x509svid/good-leaf-and-intermediate.pem')));
    const v = validateSigningCertificate(inter!, { trustDomain: 'example.org', now: ECDSA_TIME });
    expect(v.ok && v.spiffeId?.toString()).to.equal('spiffe://example.org');
  });

  it('reports expiry and not-yet-valid against the time passed in', () => {
    const [leaf] = parseCertificates(pemToDer(corpus('x509svid/good-leaf-and-intermediate.pem')));
    expect(validateLeafSvid(leaf!, { now: new Date('2020-03-24T16:00:00Z') })).to.include({ ok: false, code: SvidErrorCode.EXPIRED });
    expect(validateLeafSvid(leaf!, { now: new Date('2020-03-24T14:00:00Z') })).to.include({ ok: false, code: SvidErrorCode.NOT_YET_VALID });
    expect(validateLeafSvid(leaf!).ok, 'no time given: validity not checked').to.equal(true);
  });

  it('rejects a leaf from another trust domain when one is required', () => {
    const [leaf] = parseCertificates(pemToDer(corpus('x509svid/good-leaf-only.pem')));
    expect(validateLeafSvid(leaf!, { trustDomain: 'other.org' })).to.include({ ok: false, code: SvidErrorCode.WRONG_TRUST_DOMAIN });
    const same = validateLeafSvid(leaf!, { trustDomain: 'example.org' });
    expect(same.ok && same.spiffeId.toString()).to.equal('spiffe://example.org/workload-1');
  });
});

/**
 * Certificates crafted with the DER writer, one rule broken at a time. The
 * signature is real but irrelevant: these checks are about the profile.
 */
describe('X.509-SVID profile checks, one broken rule at a time', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
  const alg = der.sequence(der.oid(Oid.ecdsaWithSha256));
  const subjectName = der.sequence(der.set(der.sequence(der.oid(Oid.organizationName), der.utf8String('Trellis'))));
  const ext = (o: string, value: Buffer, critical: boolean): Buffer =>
    critical ? der.sequence(der.oid(o), der.boolean(true), der.octetString(value)) : der.sequence(der.oid(o), der.octetString(value));
  const san = (uris: string[], critical = true): Buffer =>
    ext(Oid.subjectAltName, der.sequence(...uris.map((u) => der.contextImplicit(6, Buffer.from(u, 'ascii')))), critical);
  const bc = (ca: boolean): Buffer => ext(Oid.basicConstraints, ca ? der.sequence(der.boolean(true)) : der.sequence(), true);
  const ku = (bits: number[], critical = true): Buffer => ext(Oid.keyUsage, der.namedBits(bits), critical);
  const eku = (oids: string[]): Buffer => ext(Oid.extKeyUsage, der.sequence(...oids.map((o) => der.oid(o))), false);
  const DS = 0;
  const KCS = 5;
  const CRL = 6;

  interface Shape {
    uris?: string[];
    sanCritical?: boolean;
    emptySubject?: boolean;
    ca?: boolean | null;
    ku?: number[] | null;
    kuCritical?: boolean;
    eku?: string[] | null;
    extra?: Buffer[];
  }
  function make(s: Shape): CertificateFacts {
    const exts: Buffer[] = [];
    if (s.ca !== null) exts.push(bc(s.ca ?? false));
    if (s.ku !== null) exts.push(ku(s.ku ?? [DS], s.kuCritical ?? true));
    if (s.eku !== null) exts.push(eku(s.eku ?? [Oid.serverAuth, Oid.clientAuth]));
    const uris = s.uris ?? ['spiffe://example.org/ns/default/sa/web'];
    if (uris.length > 0) exts.push(san(uris, s.sanCritical ?? true));
    exts.push(...(s.extra ?? []));
    const tbs = der.sequence(
      der.contextExplicit(0, der.integer(2)),
      der.integer(Buffer.from('01', 'hex')),
      alg,
      subjectName,
      der.sequence(der.time(new Date('2024-01-01T00:00:00Z')), der.time(new Date('2034-01-01T00:00:00Z'))),
      s.emptySubject ? der.sequence() : subjectName,
      spki,
      der.contextExplicit(3, der.sequence(...exts)),
    );
    return parseCertificate(der.sequence(tbs, alg, der.bitString(sign('sha256', tbs, privateKey))));
  }

  const leafCases: [string, Shape, string | 'ok'][] = [
    ['a well-formed leaf', {}, 'ok'],
    ['a leaf with an empty subject and critical SAN', { emptySubject: true }, 'ok'],
    ['a leaf without EKU (EKU is only a SHOULD)', { eku: null }, 'ok'],
    ['a leaf with no basicConstraints (cA defaults to false)', { ca: null }, 'ok'],
    ['a leaf with digitalSignature + keyEncipherment (RSA profile)', { ku: [DS, 2] }, 'ok'],
    ['a leaf with no URI SAN', { uris: [] }, SvidErrorCode.NO_URI_SAN],
    ['a leaf with two URI SANs', { uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] }, SvidErrorCode.MULTIPLE_URI_SANS],
    ['a leaf whose URI SAN is not a SPIFFE ID', { uris: ['https://example.org/a'] }, SvidErrorCode.BAD_SPIFFE_ID],
    ['a leaf whose SPIFFE ID has a dot segment', { uris: ['spiffe://example.org/a/../b'] }, SvidErrorCode.BAD_SPIFFE_ID],
    ['a leaf whose SPIFFE ID is the trust domain itself', { uris: ['spiffe://example.org'] }, SvidErrorCode.LEAF_ID_WITHOUT_PATH],
    ['a leaf with CA:true', { ca: true }, SvidErrorCode.LEAF_IS_CA],
    ['a leaf with no keyUsage (as Go writes KeyUsage 0)', { ku: null }, SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE],
    ['a leaf without digitalSignature', { ku: [2] }, SvidErrorCode.LEAF_MISSING_DIGITAL_SIGNATURE],
    ['a leaf with keyCertSign', { ku: [DS, KCS] }, SvidErrorCode.LEAF_HAS_KEY_CERT_SIGN],
    ['a leaf with cRLSign', { ku: [DS, CRL] }, SvidErrorCode.LEAF_HAS_CRL_SIGN],
    ['a leaf whose EKU lacks clientAuth', { eku: [Oid.serverAuth] }, SvidErrorCode.LEAF_EKU_INCOMPLETE],
    ['a leaf whose EKU lacks serverAuth', { eku: [Oid.clientAuth] }, SvidErrorCode.LEAF_EKU_INCOMPLETE],
    ['a leaf with a non-critical keyUsage', { kuCritical: false }, SvidErrorCode.KEY_USAGE_NOT_CRITICAL],
    ['a leaf with an empty subject and a non-critical SAN', { emptySubject: true, sanCritical: false }, SvidErrorCode.SAN_NOT_CRITICAL_WITH_EMPTY_SUBJECT],
    ['a leaf with an unknown critical extension', { extra: [ext('1.3.6.1.4.1.99999.1', der.nullValue(), true)] }, SvidErrorCode.UNHANDLED_CRITICAL_EXTENSION],
    ['a leaf with an unknown non-critical extension', { extra: [ext('1.3.6.1.4.1.99999.1', der.nullValue(), false)] }, 'ok'],
  ];
  for (const [what, shape, want] of leafCases) {
    it(`${want === 'ok' ? 'accepts' : 'rejects'} ${what}${want === 'ok' ? '' : ` with ${want}`}`, () => {
      const v = validateLeafSvid(make(shape));
      if (want === 'ok') expect(v.ok, JSON.stringify(v)).to.equal(true);
      else {
        expect(v).to.include({ ok: false, code: want });
        expect(!v.ok && v.rule).to.match(/X509-SVID|RFC 5280/);
      }
    });
  }

  it('reports the cause code of a bad SPIFFE ID', () => {
    const v = validateLeafSvid(make({ uris: ['spiffe://example.org/a/../b'] }));
    expect(v).to.include({ ok: false, cause: 'TRELLIS_SPIFFE_ID_DOT_SEGMENT' });
  });

  const signingCases: [string, Shape, string | 'ok'][] = [
    ['a CA with keyCertSign and the trust domain ID', { ca: true, ku: [KCS, CRL], uris: ['spiffe://example.org'], eku: null }, 'ok'],
    ['a CA with keyCertSign and no URI SAN', { ca: true, ku: [KCS], uris: [], eku: null }, 'ok'],
    ['a CA with critical nameConstraints', { ca: true, ku: [KCS], uris: [], eku: null, extra: [ext(Oid.nameConstraints, der.sequence(), true)] }, 'ok'],
    ['a signing certificate with CA:false', { ca: false, ku: [KCS], uris: ['spiffe://example.org'] }, SvidErrorCode.SIGNING_CERT_NOT_CA],
    ['a signing certificate without basicConstraints', { ca: null, ku: [KCS], uris: ['spiffe://example.org'] }, SvidErrorCode.SIGNING_CERT_NOT_CA],
    ['a CA without keyCertSign', { ca: true, ku: [CRL], uris: ['spiffe://example.org'] }, SvidErrorCode.SIGNING_CERT_MISSING_KEY_CERT_SIGN],
    ['a CA without keyUsage (as Go writes KeyUsage 0)', { ca: true, ku: null, uris: ['spiffe://example.org'] }, SvidErrorCode.SIGNING_CERT_MISSING_KEY_CERT_SIGN],
    ['a CA whose SPIFFE ID has a path', { ca: true, ku: [KCS], uris: ['spiffe://example.org/ca'] }, SvidErrorCode.SIGNING_CERT_ID_HAS_PATH],
    ['a CA with two URI SANs', { ca: true, ku: [KCS], uris: ['spiffe://example.org', 'spiffe://other.org'] }, SvidErrorCode.MULTIPLE_URI_SANS],
    ['a CA with a non-critical keyUsage', { ca: true, ku: [KCS], kuCritical: false, uris: [] }, SvidErrorCode.KEY_USAGE_NOT_CRITICAL],
  ];
  for (const [what, shape, want] of signingCases) {
    it(`${want === 'ok' ? 'accepts' : 'rejects'} ${what} as a signing certificate${want === 'ok' ? '' : ` with ${want}`}`, () => {
      const v = validateSigningCertificate(make(shape));
      if (want === 'ok') expect(v.ok, JSON.stringify(v)).to.equal(true);
      else expect(v).to.include({ ok: false, code: want });
    });
  }

  it('rejects an intermediate from another trust domain than the leaf, naming its position', () => {
    const leaf = make({});
    const good = make({ ca: true, ku: [KCS], uris: ['spiffe://example.org'], eku: null });
    const foreign = make({ ca: true, ku: [KCS], uris: ['spiffe://other.org'], eku: null });
    expect(validateSvidChain(leaf, [good]).ok).to.equal(true);
    expect(validateSvidChain(leaf, [good, foreign])).to.include({ ok: false, code: SvidErrorCode.WRONG_TRUST_DOMAIN, index: 2 });
    try {
      assertSvidChain(leaf, [make({ ca: false, ku: [KCS], uris: [] })]);
      expect.fail('should throw');
    } catch (err) {
      expect((err as SvidError).code).to.equal(SvidErrorCode.SIGNING_CERT_NOT_CA);
      expect((err as SvidError).details).to.include({ index: 1 });
    }
  });

  it('rejects the leaf first when both the leaf and an intermediate are bad', () => {
    expect(validateSvidChain(make({ ca: true }), [make({ ca: false, ku: [KCS], uris: [] })])).to.include({ code: SvidErrorCode.LEAF_IS_CA, index: 0 });
  });
});

describe('X.509-SVID loading of the key formats openssl writes', function () {
  this.timeout(20_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-svid-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
  const selfSignedSvid = (name: string, keyArgs: string[]): { cert: Buffer; key: string } => {
    const key = join(dir, `${name}.key`);
    const cert = join(dir, `${name}.crt`);
    run('req', '-x509', '-nodes', '-newkey', ...keyArgs, '-keyout', key, '-out', cert, '-days', '1', '-subj', '/O=Trellis',
      '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature',
      '-addext', 'extendedKeyUsage=serverAuth,clientAuth', '-addext', `subjectAltName=URI:spiffe://example.org/${name}`);
    return { cert: readFileSync(cert), key };
  };

  it('loads PKCS#8, SEC1 (EC PRIVATE KEY) and PKCS#1 (RSA PRIVATE KEY) keys', () => {
    const ec = selfSignedSvid('ec', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    run('ec', '-in', ec.key, '-out', join(dir, 'ec-sec1.pem'));
    const rsa = selfSignedSvid('rsa', ['rsa:2048']);
    run('rsa', '-in', rsa.key, '-traditional', '-out', join(dir, 'rsa-pkcs1.pem'));
    const sec1 = readFileSync(join(dir, 'ec-sec1.pem'), 'utf8');
    const pkcs1 = readFileSync(join(dir, 'rsa-pkcs1.pem'), 'utf8');
    expect(sec1).to.contain(`BEGIN EC ${'PRIVATE'} KEY`);
    expect(pkcs1).to.contain(`BEGIN RSA ${'PRIVATE'} KEY`);
    expect(parseX509SvidPem(ec.cert, readFileSync(ec.key)).spiffeId.path).to.equal('/ec');
    expect(parseX509SvidPem(ec.cert, sec1).privateKey.asymmetricKeyType).to.equal('ec');
    expect(parseX509SvidPem(rsa.cert, pkcs1).privateKey.asymmetricKeyType).to.equal('rsa');
    expect(errCode(() => parseX509SvidPem(rsa.cert, sec1))).to.equal(SvidErrorCode.KEY_MISMATCH);
  });

  it('refuses an encrypted key with a reason instead of reporting it missing', () => {
    const ec = selfSignedSvid('enc', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    run('pkcs8', '-topk8', '-in', ec.key, '-out', join(dir, 'enc.pem'), '-passout', 'pass:secret-test-only');
    const v = (): unknown => parseX509SvidPem(ec.cert, readFileSync(join(dir, 'enc.pem')));
    expect(errCode(v)).to.equal(SvidErrorCode.MALFORMED_PRIVATE_KEY);
  });
});
