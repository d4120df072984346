import { expect } from 'chai';
import * as fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { ECDH, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { der } from '@trellis/shared';
import { makeTmpDir, skipUnless, trellisSync } from '@trellis/testkit';
import { NATIVE_ECDSA } from './native-ecdsa-dependency';
import { loadCertificateAuthority } from '../../src/ca/certificate-authority';
import { CaError } from '../../src/ca/ca-error';
import { parseCsr, type ParsedCsr } from '../../src/ca/csr';
import { loadNativeEcdsaVerify, NATIVE_ECDSA_PACKAGE } from '../../src/ca/native-ecdsa';
import { makeCaFixture, opensslVerify, type CaFixture } from './ca-fixture';
import { makeCsr, opensslCsr } from './csr-fixtures';

const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const CURVE_OID = { 'P-256': '1.2.840.10045.3.1.7', 'P-384': '1.3.132.0.34' } as const;
const SIG_OID = { sha256: '1.2.840.10045.4.3.2', sha384: '1.2.840.10045.4.3.3', sha512: '1.2.840.10045.4.3.4', rsaSha256: '1.2.840.113549.1.1.11' } as const;

/** A CSR over hand-made SPKI bytes (so tests can carry compressed or off-curve points), signed by `privateKey`. */
function csrWithSpki(spki: Buffer, privateKey: KeyObject, hash: 'sha256' | 'sha384' | 'sha512', algOid: string = SIG_OID[hash]): Buffer {
  const info = der.sequence(der.integer(0), der.sequence(), spki, der.tlv(0xa0));
  return der.sequence(info, der.sequence(der.oid(algOid)), der.bitString(cryptoSign(hash, info, privateKey)));
}

function ecSpki(curve: 'P-256' | 'P-384', point: Buffer): Buffer {
  return der.sequence(der.sequence(der.oid(EC_PUBLIC_KEY), der.oid(CURVE_OID[curve])), der.bitString(point));
}

function ecKey(curve: 'P-256' | 'P-384'): { privateKey: KeyObject; point: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return { privateKey, point: spki.subarray(spki.length - (curve === 'P-256' ? 65 : 97)) };
}

/** What a caller can observe of one parse: the error code, or the parsed facts including the key. */
function outcome(csr: Buffer, nativeVerify: ReturnType<typeof loadNativeEcdsaVerify>): string {
  let p: ParsedCsr;
  try {
    p = parseCsr(csr, 'CSR', { nativeVerify });
  } catch (err) {
    if (!(err instanceof CaError)) throw err;
    return `error ${err.code}`;
  }
  return JSON.stringify({
    keyType: p.keyType,
    alg: p.signatureAlgorithm,
    uris: p.uris,
    ca: p.requestsCa,
    spki: p.spkiDer.toString('hex'),
    key: p.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
  });
}

describe('CSR signature checks with and without the native verifier', function () {
  const native = loadNativeEcdsaVerify();
  const tmp = makeTmpDir('trellis-csr-parity-');
  after(() => tmp.cleanup());
  before(function () {
    // Parity needs both paths; without the addon there is only node:crypto (the fallback tests below still run).
    skipUnless(this, NATIVE_ECDSA);
  });

  it('Should give the same verdict, key type and key on both paths for a corpus of good and bad CSRs', async () => {
    const p256 = ecKey('P-256');
    const p384 = ecKey('P-384');
    const compressed = ECDH.convertKey(p256.point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
    const offCurve = Buffer.from(p256.point);
    offCurve[offCurve.length - 1]! ^= 1;
    const corpus: Array<[string, Buffer, string]> = [
      ['P-256 / SHA-256 (WebCrypto)', (await makeCsr({ keyType: 'ec-p256', uris: ['spiffe://example.org/a'] })).der, 'ok'],
      ['P-384 / SHA-384 (WebCrypto)', (await makeCsr({ keyType: 'ec-p384' })).der, 'ok'],
      ['RSA-2048', (await makeCsr({ keyType: 'rsa-2048' })).der, 'ok'],
      ['P-256 / SHA-512', csrWithSpki(ecSpki('P-256', p256.point), p256.privateKey, 'sha512'), 'ok'],
      ['P-384 / SHA-256', csrWithSpki(ecSpki('P-384', p384.point), p384.privateKey, 'sha256'), 'ok'],
      ['P-256 with a compressed point', csrWithSpki(ecSpki('P-256', compressed), p256.privateKey, 'sha256'), 'ok'],
      ['P-256 with a point off the curve', csrWithSpki(ecSpki('P-256', offCurve), p256.privateKey, 'sha256'), 'error TRELLIS_CA_UNSUPPORTED_KEY'],
      ['P-256 signed by another key', csrWithSpki(ecSpki('P-256', p256.point), p384.privateKey, 'sha256'), 'error TRELLIS_CA_BAD_CSR_SIGNATURE'],
      ['P-256 key under an RSA signature algorithm', csrWithSpki(ecSpki('P-256', p256.point), p256.privateKey, 'sha256', SIG_OID.rsaSha256), 'error TRELLIS_CA_BAD_CSR_SIGNATURE'],
      ['P-384 point labelled P-256', csrWithSpki(ecSpki('P-256', p384.point), p384.privateKey, 'sha384'), 'error TRELLIS_CA_UNSUPPORTED_KEY'],
      ['P-521 (unsupported)', (await makeCsr({ keyType: 'ec-p521' })).der, 'error TRELLIS_CA_UNSUPPORTED_KEY'],
    ];
    for (const [name, csr, want] of corpus) {
      const viaNative = outcome(csr, native);
      const viaNode = outcome(csr, null);
      expect(viaNative, name).to.equal(viaNode);
      expect(viaNative.startsWith('error') ? viaNative : 'ok', name).to.equal(want);
    }
  });

  it('Should give the same outcome on both paths for an openssl-made CSR', () => {
    const made = opensslCsr(tmp.dir, 'parity', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'URI:spiffe://example.org/x');
    const csr = Buffer.from(made.pem);
    expect(outcome(csr, native)).to.equal(outcome(csr, null));
    expect(outcome(csr, native)).to.not.match(/^error/);
  });

  it('Should give the same outcome on both paths for every single-byte change or truncation of P-256 and P-384 CSRs (property)', async () => {
    const csrs = [(await makeCsr({ keyType: 'ec-p256', uris: ['spiffe://example.org/a'] })).der, (await makeCsr({ keyType: 'ec-p384' })).der];
    fc.assert(
      fc.property(fc.nat({ max: 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(), (which, at, xor, truncate) => {
        const csr = csrs[which]!;
        const pos = at % csr.length;
        const mutated = truncate ? csr.subarray(0, pos) : Buffer.from(csr);
        if (!truncate) mutated[pos]! ^= xor;
        expect(outcome(mutated, native)).to.equal(outcome(mutated, null));
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseCsr with a native verifier that misbehaves at run time', () => {
  it('Should take the node:crypto verdict when the native verifier throws or answers something other than 1, 0 or -1', async () => {
    const p256 = ecKey('P-256');
    const good = (await makeCsr({ keyType: 'ec-p256' })).der;
    const badSig = csrWithSpki(ecSpki('P-256', p256.point), ecKey('P-256').privateKey, 'sha256');
    const throws = (): never => {
      throw new Error('addon fault');
    };
    const answers7 = (() => 7) as unknown as ReturnType<typeof loadNativeEcdsaVerify>;
    for (const csr of [good, badSig]) {
      expect(outcome(csr, throws)).to.equal(outcome(csr, null));
      expect(outcome(csr, answers7)).to.equal(outcome(csr, null));
    }
    expect(outcome(badSig, throws)).to.equal('error TRELLIS_CA_BAD_CSR_SIGNATURE');
  });
});

describe('The CA without the native verifier', () => {
  let fx: CaFixture;
  before(async () => {
    fx = await makeCaFixture();
  });
  after(() => fx.cleanup());

  it('Should issue an SVID openssl verifies with node:crypto checking the CSR when told not to use the addon', async () => {
    const ca = await loadCertificateAuthority(fx.dir, { nativeVerify: null });
    try {
      expect(ca.csrVerifier).to.equal('node');
      for (const keyType of ['ec-p256', 'ec-p384'] as const) {
        const svid = await ca.issue({ csr: (await makeCsr({ keyType })).der, spiffeId: 'spiffe://example.org/ns/a/sa/b', requester: 'test' });
        expect(svid.keyType).to.equal(keyType);
        expect(opensslVerify(fx, svid.leafPem).status, keyType).to.equal(0);
      }
    } finally {
      ca.close();
    }
  });

  it('Should use the addon by default exactly when it loads', async () => {
    const ca = await loadCertificateAuthority(fx.dir);
    try {
      expect(ca.csrVerifier).to.equal(loadNativeEcdsaVerify() ? 'native' : 'node');
    } finally {
      ca.close();
    }
  });

  it('Should fall back to node:crypto in a real process where the addon cannot be resolved, and the trellis CLI still signs', async () => {
    const block = join(fx.tmp, 'block-native.js');
    writeFileSync(
      block,
      `const M = require('node:module');
const resolve = M._resolveFilename;
M._resolveFilename = function (request, ...rest) {
  if (request === ${JSON.stringify(NATIVE_ECDSA_PACKAGE)}) throw Object.assign(new Error('Cannot find module ' + request), { code: 'MODULE_NOT_FOUND' });
  return resolve.call(this, request, ...rest);
};
`,
    );
    const csrPath = join(fx.tmp, 'fallback.csr');
    writeFileSync(csrPath, (await makeCsr({ keyType: 'ec-p256' })).pem);
    const env = { NODE_OPTIONS: `--require=${block}` };

    const probe = spawnSync(
      process.execPath,
      ['-e', `require(${JSON.stringify(require.resolve('../../src/ca/certificate-authority'))}).loadCertificateAuthority(process.argv[1]).then((ca) => { process.stdout.write(ca.csrVerifier); ca.close(); })`, fx.dir],
      { env: { ...process.env, ...env }, encoding: 'utf8' },
    );
    expect(probe.stderr).to.equal('');
    expect(probe.stdout).to.equal('node');

    const r = trellisSync(['ca', 'sign', '--dir', fx.dir, '--csr', csrPath, '--spiffe-id', 'spiffe://example.org/ns/a/sa/fallback'], { env });
    expect(r.status, r.stderr).to.equal(0);
    const leafPem = r.stdout.slice(0, r.stdout.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----\n'.length);
    expect(opensslVerify(fx, leafPem).status).to.equal(0);
  });
});
