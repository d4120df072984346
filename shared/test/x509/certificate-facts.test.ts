import { expect } from 'chai';
import * as fc from 'fast-check';
import { X509Certificate, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCertificate, parseCertificates, type CertificateFacts } from '../../src/x509/certificate-facts';
import { derToPem, pemBlocks, pemToDer } from '../../src/x509/pem';
import { X509Error, X509ErrorCode } from '../../src/x509/x509-error';
import { Oid } from '../../src/x509/oids';
import * as der from '../../src/x509/der';
import { CORPORA, describeWith, itWith, OPENSSL, readCorpusFile, readCorpusJson } from '@trellis/testkit';

interface CertMeta {
  subject: string;
  issuer: string;
  not_before: string;
  not_after: string;
  public_key: string;
  signature_hash: string;
  basic_constraints: { ca: boolean; path_length: number | null; critical: boolean } | null;
  key_usage: { critical: boolean; bits: string[] } | null;
  extended_key_usage: string[] | null;
  san: { critical: boolean; uri: string[]; dns: string[] } | null;
}
interface GoSpiffeManifest {
  x509svid_files: Record<string, { expected: string; certificates?: (CertMeta | { parse_error: string })[] }>;
  x509bundle_files: Record<string, { expected: string; certificates?: CertMeta[] }>;
}

function x509code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(X509Error);
    return (err as X509Error).code;
  }
}

const KU_SNAKE: Record<string, string> = {
  digitalSignature: 'digital_signature',
  contentCommitment: 'content_commitment',
  keyEncipherment: 'key_encipherment',
  dataEncipherment: 'data_encipherment',
  keyAgreement: 'key_agreement',
  keyCertSign: 'key_cert_sign',
  cRLSign: 'crl_sign',
  encipherOnly: 'encipher_only',
  decipherOnly: 'decipher_only',
};
const EKU_NAME: Record<string, string> = { [Oid.serverAuth]: 'serverAuth', [Oid.clientAuth]: 'clientAuth' };

/** Our facts in the corpus manifest's vocabulary. */
function asMeta(f: CertificateFacts): CertMeta {
  return {
    subject: f.subjectText,
    issuer: f.issuerText,
    not_before: f.notBefore.toISOString().replace('.000Z', 'Z'),
    not_after: f.notAfter.toISOString().replace('.000Z', 'Z'),
    public_key: f.keyType.startsWith('ec-') ? 'EC' : f.keyType.startsWith('rsa-') ? 'RSA' : f.keyType,
    signature_hash: f.signatureHash ?? 'none',
    basic_constraints: f.basicConstraints.present
      ? { ca: f.basicConstraints.ca, path_length: f.basicConstraints.pathLen ?? null, critical: f.basicConstraints.critical }
      : null,
    key_usage: f.keyUsage.present
      ? { critical: f.keyUsage.critical, bits: Object.keys(KU_SNAKE).filter((k) => f.keyUsage[k as keyof typeof f.keyUsage] === true).map((k) => KU_SNAKE[k]!) }
      : null,
    extended_key_usage: f.extKeyUsage.present ? f.extKeyUsage.oids.map((o) => EKU_NAME[o] ?? o) : null,
    san: f.subjectAltName.present ? { critical: f.subjectAltName.critical, uri: [...f.subjectAltName.uris], dns: [...f.subjectAltName.dnsNames] } : null,
  };
}

/** Cross-checks our facts against node:crypto's independent parser. */
function crossCheckWithNode(f: CertificateFacts): void {
  const n = new X509Certificate(f.der);
  expect(f.serialHex).to.equal(n.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''));
  expect(f.notBefore.getTime()).to.equal(new Date(n.validFrom).getTime());
  expect(f.notAfter.getTime()).to.equal(new Date(n.validTo).getTime());
  // node's `ca` is OpenSSL's X509_check_ca: the cA flag AND keyCertSign when keyUsage is present.
  expect(f.basicConstraints.ca && (!f.keyUsage.present || f.keyUsage.keyCertSign)).to.equal(n.ca);
  const nodeUris = (n.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  expect([...f.subjectAltName.uris]).to.deep.equal(nodeUris);
  expect(createPublicKey({ key: f.spki, format: 'der', type: 'spki' }).equals(n.publicKey)).to.equal(true);
  if (n.publicKey.asymmetricKeyType === 'rsa') expect(f.keyType).to.equal(`rsa-${n.publicKey.asymmetricKeyDetails!.modulusLength}`);
}

describe('Certificate facts', () => {
  describeWith(CORPORA, 'against the go-spiffe corpus metadata and node:crypto', () => {
    const manifest = readCorpusJson<GoSpiffeManifest>('go-spiffe', 'manifest.json');
    const files = { ...manifest.x509svid_files, ...manifest.x509bundle_files };
    for (const [file, meta] of Object.entries(files)) {
      const metas = (meta.certificates ?? []).filter((c): c is CertMeta => !('parse_error' in c));
      if (metas.length === 0) continue;
      it(`reads every certificate in ${file} as the manifest describes`, () => {
        const ders = pemToDer(readCorpusFile('go-spiffe', ...file.split('/')), 'CERTIFICATE', file);
        expect(ders).to.have.length(metas.length);
        const facts = parseCertificates(ders);
        facts.forEach((f, i) => {
          expect(asMeta(f), `${file} #${i + 1}`).to.deep.equal(metas[i]);
          crossCheckWithNode(f);
        });
      });
    }

    it('refuses corrupt-cert.pem as a malformed certificate', () => {
      const [d] = pemToDer(readCorpusFile('go-spiffe', 'x509svid', 'corrupt-cert.pem'));
      expect(x509code(() => parseCertificate(d!))).to.equal(X509ErrorCode.MALFORMED_CERTIFICATE);
    });

    it('refuses the damaged DER in x509bundle/corrupted.pem', () => {
      const ders = pemToDer(readCorpusFile('go-spiffe', 'x509bundle', 'corrupted.pem'));
      expect(ders.length).to.be.greaterThan(0);
      expect(x509code(() => parseCertificates(ders))).to.equal(X509ErrorCode.MALFORMED_CERTIFICATE);
    });
  });

  describeWith(OPENSSL, 'against certificates made by openssl', function () {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'trellis-facts-'));
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    function opensslCert(keyArgs: string[], exts: string[], extra: string[] = []): Buffer {
      const out = join(dir, `c${Math.random().toString(36).slice(2)}.der`);
      execFileSync('openssl', [
        'req', '-x509', '-nodes', '-newkey', ...keyArgs, '-keyout', join(dir, 'k.pem'), '-subj', '/O=Trellis/CN=facts',
        '-days', '30', '-outform', 'DER', '-out', out, ...exts.flatMap((e) => ['-addext', e]), ...extra,
      ], { stdio: 'pipe' });
      return readFileSync(out);
    }

    it('reads an EC P-256 SVID-shaped certificate with every extension', () => {
      const d = opensslCert(['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth,clientAuth',
        'subjectAltName=critical,URI:spiffe://example.org/ns/a/sa/b,DNS:b.a.svc,IP:10.1.2.3,IP:2001:db8::1',
        'subjectKeyIdentifier=hash',
        'authorityKeyIdentifier=keyid:always',
      ]);
      const f = parseCertificate(d);
      crossCheckWithNode(f);
      expect(f.keyType).to.equal('ec-p256');
      expect(f.version).to.equal(3);
      expect(f.subjectText).to.equal('CN=facts,O=Trellis');
      expect(f.basicConstraints).to.deep.equal({ present: true, critical: true, ca: false, pathLen: undefined });
      expect(f.keyUsage).to.include({ present: true, critical: true, digitalSignature: true, keyEncipherment: true, keyCertSign: false, cRLSign: false });
      expect(f.extKeyUsage.oids).to.deep.equal([Oid.serverAuth, Oid.clientAuth]);
      expect(f.subjectAltName).to.deep.include({ critical: true, uris: ['spiffe://example.org/ns/a/sa/b'], dnsNames: ['b.a.svc'] });
      expect(f.subjectAltName.ipAddresses).to.deep.equal(['10.1.2.3', '2001:db8:0:0:0:0:0:1']);
      expect(f.subjectKeyId).to.have.length(20);
      expect(f.authorityKeyId?.equals(f.subjectKeyId!)).to.equal(true);
      expect([...f.criticalExtensions].sort()).to.deep.equal([Oid.keyUsage, Oid.subjectAltName, Oid.basicConstraints].sort());
      expect(f.signatureAlgorithmName).to.equal('ecdsa-with-SHA256');
      // The signed bytes and signature verify with node:crypto: tbs/signature are the right slices.
      const { verify } = require('node:crypto') as typeof import('node:crypto');
      expect(verify('sha256', f.tbs, createPublicKey({ key: f.spki, format: 'der', type: 'spki' }), f.signature)).to.equal(true);
    });

    it('reads EC P-384 and RSA key types and a CA with pathLen', () => {
      const p384 = parseCertificate(opensslCert(['ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,keyCertSign,cRLSign']));
      expect(p384.keyType).to.equal('ec-p384');
      expect(p384.basicConstraints).to.deep.equal({ present: true, critical: true, ca: true, pathLen: 0 });
      expect(p384.keyUsage).to.include({ keyCertSign: true, cRLSign: true, digitalSignature: false });
      const rsa = parseCertificate(opensslCert(['rsa:2048'], []));
      crossCheckWithNode(rsa);
      expect(rsa.keyType).to.equal('rsa-2048');
      expect(rsa.signatureHash).to.equal('sha256');
    });
  });

  describe('on malformed input', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' }) as Buffer;
    const alg = der.sequence(der.oid(Oid.ecdsaWithSha256));
    const name = der.sequence(der.set(der.sequence(der.oid(Oid.commonName), der.utf8String('x'))));
    const validity = der.sequence(der.time(new Date('2024-01-01T00:00:00Z')), der.time(new Date('2025-01-01T00:00:00Z')));
    const ext = (o: string, value: Buffer, critical = false): Buffer =>
      critical ? der.sequence(der.oid(o), der.boolean(true), der.octetString(value)) : der.sequence(der.oid(o), der.octetString(value));
    const build = (exts: Buffer[], outerAlg: Buffer = alg, version = 2): Buffer => {
      const tbs = der.sequence(
        der.contextExplicit(0, der.integer(version)),
        der.integer(Buffer.from('0102', 'hex')),
        alg,
        name,
        validity,
        der.sequence(),
        spki,
        ...(exts.length ? [der.contextExplicit(3, der.sequence(...exts))] : []),
      );
      return der.sequence(tbs, outerAlg, der.bitString(sign('sha256', tbs, privateKey)));
    };

    it('accepts the well-formed base certificate, with an empty subject', () => {
      const f = parseCertificate(build([ext(Oid.basicConstraints, der.sequence())]));
      expect(f.subjectEmpty).to.equal(true);
      expect(f.subjectText).to.equal('');
      expect(new X509Certificate(f.der).subject ?? '').to.equal('');
    });

    it('rejects a duplicate extension', () => {
      const bc = ext(Oid.basicConstraints, der.sequence());
      expect(x509code(() => parseCertificate(build([bc, bc])))).to.equal(X509ErrorCode.DUPLICATE_EXTENSION);
    });

    it('rejects an outer signature algorithm that differs from the inner one', () => {
      expect(x509code(() => parseCertificate(build([], der.sequence(der.oid(Oid.ecdsaWithSha384)))))).to.equal(X509ErrorCode.SIGNATURE_ALGORITHM_MISMATCH);
    });

    it('rejects version 4 and extensions in a v1 certificate', () => {
      expect(x509code(() => parseCertificate(build([], alg, 3)))).to.equal(X509ErrorCode.UNSUPPORTED_VERSION);
      expect(x509code(() => parseCertificate(build([ext(Oid.basicConstraints, der.sequence())], alg, 0)))).to.equal(X509ErrorCode.UNSUPPORTED_VERSION);
    });

    const badExts: [string, Buffer][] = [
      ['basicConstraints holding an OCTET STRING', ext(Oid.basicConstraints, der.octetString(Buffer.alloc(1)))],
      ['basicConstraints with a non-DER boolean', ext(Oid.basicConstraints, der.sequence(Buffer.from([1, 1, 1])))],
      ['keyUsage with set padding bits', ext(Oid.keyUsage, Buffer.from([3, 2, 7, 0x81]))],
      ['an empty extKeyUsage', ext(Oid.extKeyUsage, der.sequence())],
      ['an empty subjectAltName', ext(Oid.subjectAltName, der.sequence())],
      ['a 5-byte iPAddress', ext(Oid.subjectAltName, der.sequence(der.contextImplicit(7, Buffer.alloc(5))))],
      ['a non-ASCII URI SAN', ext(Oid.subjectAltName, der.sequence(der.contextImplicit(6, Buffer.from('spiffe://é', 'utf8'))))],
      ['subjectAltName with trailing bytes', ext(Oid.subjectAltName, Buffer.concat([der.sequence(der.contextImplicit(2, Buffer.from('a'))), Buffer.from([0])]))],
    ];
    for (const [what, e] of badExts) {
      it(`rejects ${what} with TRELLIS_X509_BAD_EXTENSION`, () => {
        expect(x509code(() => parseCertificate(build([e])))).to.equal(X509ErrorCode.BAD_EXTENSION);
      });
    }

    it('fails every truncation of a real certificate with a typed error, never a crash', () => {
      const good = build([ext(Oid.subjectAltName, der.sequence(der.contextImplicit(6, Buffer.from('spiffe://a/b'))), true)]);
      for (let n = 0; n < good.length; n++) {
        expect(x509code(() => parseCertificate(good.subarray(0, n))), `length ${n}`).to.equal(X509ErrorCode.MALFORMED_CERTIFICATE);
      }
    });

    it('fails single-byte corruptions with X509Error or still parses, never a crash', () => {
      const good = build([ext(Oid.keyUsage, der.namedBits([0]), true)]);
      for (let i = 0; i < good.length; i++) {
        const bad = Buffer.from(good);
        bad[i] = bad[i]! ^ 0xff;
        try {
          parseCertificate(bad);
        } catch (err) {
          expect(err, `byte ${i}: ${String(err)}`).to.be.instanceOf(X509Error);
        }
      }
    });
  });
});

describe('PEM', () => {
  const cert = Buffer.from('3003020101', 'hex');

  it('only ever throws X509Error on random text around PEM markers', () => {
    const piece = fc.constantFrom('-----BEGIN CERTIFICATE-----', '-----END CERTIFICATE-----', '-----BEGIN X-----', 'MAMCAQE=', 'Proc-Type: 4', '\n', '\r\n', '=', 'junk', ' ');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (parts) => {
        try {
          for (const d of pemToDer(parts.join(''))) {
            try {
              parseCertificate(d);
            } catch (err) {
              if (!(err instanceof X509Error)) throw err;
            }
          }
        } catch (err) {
          if (!(err instanceof X509Error)) throw err;
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('round-trips DER through PEM with 64-column lines', () => {
    const big = Buffer.alloc(100, 0xab);
    const pem = derToPem(big);
    expect(pem.split('\n')[1]).to.have.length(64);
    expect(pemToDer(pem)[0]!.equals(big)).to.equal(true);
  });

  it('reads several blocks, skips other labels and ignores junk between blocks', () => {
    const text = `subject=CN=x\nissuer=CN=y\n${derToPem(cert)}some comment\n${derToPem(Buffer.from('00', 'hex'), 'PRIVATE KEY')}\r\n${derToPem(cert)}`;
    expect(pemToDer(text)).to.have.length(2);
    expect(pemToDer(text, 'PRIVATE KEY')).to.have.length(1);
    expect(pemBlocks(text).map((b) => b.label)).to.deep.equal(['CERTIFICATE', 'PRIVATE KEY', 'CERTIFICATE']);
  });

  it('returns no blocks for empty input and refuses text with no block at all', () => {
    expect(pemToDer('')).to.deep.equal([]);
    expect(pemToDer('\n  \n')).to.deep.equal([]);
    expect(x509code(() => pemToDer('Not PEM encoded file', 'CERTIFICATE', 'not-pem.pem'))).to.equal(X509ErrorCode.NOT_PEM);
  });

  itWith(CORPORA, 'reads the go-spiffe PEM fixtures as go-spiffe does', () => {
    expect(pemToDer(readCorpusFile('go-spiffe', 'x509bundle', 'certs.pem'))).to.have.length(2);
    expect(pemToDer(readCorpusFile('go-spiffe', 'x509bundle', 'empty.pem'))).to.have.length(0);
    expect(pemToDer(readCorpusFile('go-spiffe', 'x509bundle', 'key.pem'))).to.have.length(0);
    expect(x509code(() => pemToDer(readCorpusFile('go-spiffe', 'x509svid', 'not-pem')))).to.equal(X509ErrorCode.NOT_PEM);
    const both = readCorpusFile('go-spiffe', 'x509svid', 'good-key-and-cert.pem');
    expect(pemBlocks(both).map((b) => b.label)).to.deep.equal(['PRIVATE KEY', 'CERTIFICATE']);
  });

  const broken: [string, string][] = [
    ['an unterminated block', '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n'],
    ['a mismatched END label', '-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END PRIVATE KEY-----\n'],
    ['non-base64 characters', '-----BEGIN CERTIFICATE-----\nMAMC*QE=\n-----END CERTIFICATE-----\n'],
    ['truncated base64', '-----BEGIN CERTIFICATE-----\nMAMCAQ\n-----END CERTIFICATE-----\n'],
    ['RFC 1421 headers', '-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nMAMCAQE=\n-----END CERTIFICATE-----\n'],
  ];
  for (const [what, text] of broken) {
    it(`refuses ${what} naming the line`, () => {
      try {
        pemToDer(text, 'CERTIFICATE', 'ca.pem');
        expect.fail('should throw');
      } catch (err) {
        expect((err as X509Error).code).to.equal(X509ErrorCode.BAD_PEM);
        expect((err as X509Error).details).to.include({ source: 'ca.pem' });
        expect((err as X509Error).details['line']).to.be.a('number');
      }
    });
  }
});
