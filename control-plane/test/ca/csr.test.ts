import { expect } from 'chai';
import * as fc from 'fast-check';
import { makeTmpDir } from '@trellis/testkit';
import { CaError } from '../../src/ca/ca-error';
import { parseCsr } from '../../src/ca/csr';
import { makeCsr, opensslCsr } from './csr-fixtures';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CaError);
    return (err as CaError).code;
  }
  return undefined;
}

describe('CSR parsing on the issuance path', () => {
  const tmp = makeTmpDir('trellis-csr-');
  after(() => tmp.cleanup());

  const accepted = [
    ['ec-p256', 'ecdsa-with-SHA256'],
    ['ec-p384', 'ecdsa-with-SHA384'],
    ['rsa-2048', 'sha256WithRSAEncryption'],
  ] as const;
  for (const [keyType, alg] of accepted) {
    it(`Should accept a ${keyType} CSR in DER and in PEM and report its key type`, async () => {
      const csr = await makeCsr({ keyType });
      for (const input of [csr.der, Buffer.from(csr.pem)]) {
        const p = parseCsr(input);
        expect(p.keyType).to.equal(keyType);
        expect(p.signatureAlgorithm).to.equal(alg);
        expect(p.uris).to.deep.equal([]);
        expect(p.requestsCa).to.equal(false);
      }
    });
  }

  it('Should read the requested URI SANs and ignore DNS names', async () => {
    const csr = await makeCsr({ uris: ['spiffe://example.org/a', 'spiffe://example.org/b'], dnsNames: ['web.default.svc'] });
    expect(parseCsr(csr.der).uris).to.deep.equal(['spiffe://example.org/a', 'spiffe://example.org/b']);
  });

  it('Should refuse a CSR that requests the subjectAltName extension twice, as a certificate with it twice is refused (TRELLIS_CA_BAD_DER)', async () => {
    // Read by the same extension reader as certificates: the two lists are not merged into one request.
    const csr = await makeCsr({ uris: ['spiffe://example.org/a'], secondSanUris: ['spiffe://example.org/admin'] });
    expect(codeOf(() => parseCsr(csr.der))).to.equal('TRELLIS_CA_BAD_DER');
  });

  it('Should notice a CSR that asks for CA:true', async () => {
    const csr = await makeCsr({ ca: true });
    expect(parseCsr(csr.der).requestsCa).to.equal(true);
  });

  it('Should accept a CSR made by openssl with a URI SAN', () => {
    const c = opensslCsr(tmp.dir, 'ossl', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'URI:spiffe://example.org/x');
    const p = parseCsr(Buffer.from(c.pem));
    expect(p.uris).to.deep.equal(['spiffe://example.org/x']);
    expect(p.keyType).to.equal('ec-p256');
  });

  it('Should refuse a CSR whose signature does not verify', async () => {
    const csr = await makeCsr();
    const bad = Buffer.from(csr.der);
    bad[bad.length - 5] ^= 0x01;
    expect(codeOf(() => parseCsr(bad))).to.equal('TRELLIS_CA_BAD_CSR_SIGNATURE');
  });

  it('Should refuse a CSR whose signed content was altered', async () => {
    const csr = await makeCsr();
    const bad = Buffer.from(csr.der);
    const cn = bad.indexOf(Buffer.from('workload'));
    bad[cn] = 'W'.charCodeAt(0);
    expect(codeOf(() => parseCsr(bad))).to.equal('TRELLIS_CA_BAD_CSR_SIGNATURE');
  });

  const refusedKeys: Array<[string, () => Promise<Buffer>]> = [
    ['EC P-521', async () => (await makeCsr({ keyType: 'ec-p521' })).der],
    ['RSA 1024', async () => (await makeCsr({ keyType: 'rsa-1024' })).der],
    ['Ed25519', async () => Buffer.from(opensslCsr(tmp.dir, 'ed', ['-newkey', 'ed25519']).pem)],
  ];
  for (const [name, make] of refusedKeys) {
    it(`Should refuse a ${name} key with UNSUPPORTED_KEY`, async () => {
      const der = await make();
      expect(codeOf(() => parseCsr(der))).to.equal('TRELLIS_CA_UNSUPPORTED_KEY');
    });
  }

  it('Should refuse malformed PEM and DER with their own codes', async () => {
    const csr = await makeCsr();
    expect(codeOf(() => parseCsr(Buffer.from('hello')))).to.equal('TRELLIS_CA_BAD_PEM');
    expect(codeOf(() => parseCsr(Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')))).to.equal('TRELLIS_CA_BAD_PEM');
    expect(codeOf(() => parseCsr(Buffer.from('-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n')))).to.equal('TRELLIS_CA_BAD_PEM');
    expect(codeOf(() => parseCsr(Buffer.alloc(0)))).to.equal('TRELLIS_CA_BAD_PEM');
    for (const cut of [1, 2, 10, csr.der.length - 1]) {
      expect(codeOf(() => parseCsr(csr.der.subarray(0, cut))), `cut at ${cut}`).to.equal('TRELLIS_CA_BAD_DER');
    }
    expect(codeOf(() => parseCsr(Buffer.concat([csr.der, Buffer.from([0])])))).to.equal('TRELLIS_CA_BAD_DER');
  });

  it('Should never throw anything but a CaError for arbitrary bytes after a SEQUENCE tag', () => {
    for (let i = 0; i < 300; i++) {
      const junk = Buffer.from([0x30, ...Array.from({ length: (i % 40) + 1 }, () => Math.floor(Math.random() * 256))]);
      try {
        parseCsr(junk);
      } catch (err) {
        expect(err, junk.toString('hex')).to.be.instanceOf(CaError);
      }
    }
  });
});

describe('CSR parsing under mutation', () => {
  it('Should answer every single-byte change or truncation of a valid CSR with a verified parse or a CaError', async () => {
    const csr = await makeCsr({ uris: ['spiffe://example.org/a'] });
    fc.assert(
      fc.property(fc.nat({ max: csr.der.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean(), (pos, xor, truncate) => {
        const mutated = truncate ? csr.der.subarray(0, pos) : Buffer.from(csr.der);
        if (!truncate) mutated[pos] ^= xor;
        try {
          const p = parseCsr(mutated);
          // A change the parser accepts must still carry a signature that verifies, i.e. it hit no signed byte.
          expect(p.spkiDer.equals(parseCsr(csr.der).spkiDer)).to.equal(true);
        } catch (err) {
          expect(err).to.be.instanceOf(CaError);
        }
      }),
      { numRuns: 400 },
    );
  });
});
