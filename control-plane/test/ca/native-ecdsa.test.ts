import { expect } from 'chai';
import * as fc from 'fast-check';
import { createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { dirname, join } from 'node:path';
import { der } from '@trellis/shared';
import { skipUnless } from '@trellis/testkit';
import { NATIVE_ECDSA } from './native-ecdsa-dependency';
import { loadNativeEcdsaVerify, NATIVE_ECDSA_PACKAGE, NATIVE_HASH, type NativeEcdsaVerify, type NativeVerdict } from '../../src/ca/native-ecdsa';

type Curve = 'P-256' | 'P-384';
type Hash = 'sha256' | 'sha384' | 'sha512';
const SIZE: Record<Curve, number> = { 'P-256': 32, 'P-384': 48 };
const CURVE_ARG: Record<Curve, 0 | 1> = { 'P-256': 0, 'P-384': 1 };
/** The field primes, big-endian: a coordinate equal to p is out of range. */
const FIELD_PRIME: Record<Curve, string> = {
  'P-256': 'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff',
  'P-384': 'fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff',
};

/** Where the install step puts the addon; its presence means it must load. */
function addonBuildOutput(): string | undefined {
  try {
    return join(dirname(require.resolve(`${NATIVE_ECDSA_PACKAGE}/package.json`)), 'build', 'Release', 'ecdsa_verify.node');
  } catch {
    return undefined;
  }
}

interface TestKey {
  curve: Curve;
  point: Buffer;
  key: KeyObject;
  privateKey: KeyObject;
}

function freshKey(curve: Curve): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  return { curve, point: spki.subarray(spki.length - (2 * SIZE[curve] + 1)), key: publicKey, privateKey };
}

/**
 * What node:crypto says about (point, message, signature): -1 when the point
 * does not import as a public key, else whether the signature verifies.
 */
function nodeVerdict(curve: Curve, point: Buffer, hash: Hash, message: Buffer, signature: Buffer): NativeVerdict {
  const size = SIZE[curve];
  let key: KeyObject;
  try {
    if (point.length !== 2 * size + 1 || point[0] !== 0x04) throw new Error('not an uncompressed point');
    key = createPublicKey({ key: { kty: 'EC', crv: curve, x: point.subarray(1, 1 + size).toString('base64url'), y: point.subarray(1 + size).toString('base64url') }, format: 'jwk' });
  } catch {
    return -1;
  }
  try {
    return cryptoVerify(hash, message, key, signature) ? 1 : 0;
  } catch {
    return 0;
  }
}

function ecdsaSig(r: string, s: string): Buffer {
  return der.sequence(der.integer(Buffer.from(r, 'hex')), der.integer(Buffer.from(s, 'hex')));
}

function flipBit(b: Buffer, bit: number): Buffer {
  const out = Buffer.from(b);
  out[(bit >> 3) % out.length]! ^= 1 << (bit & 7);
  return out;
}

describe('The native ECDSA verifier', function () {
  let verify: NativeEcdsaVerify;

  before(function () {
    const native = loadNativeEcdsaVerify();
    const built = addonBuildOutput();
    if (!native) {
      // Without the addon the CA runs on node:crypto (covered by the fallback tests below); the
      // agreement tests need the addon, and a build that exists but does not load fails the first test.
      if (built && existsSync(built)) throw new Error(`${built} exists but the addon did not load or failed its self-test`);
      // CI requires it, so a build that silently failed at install shows up as a failure, not a skip.
      skipUnless(this, NATIVE_ECDSA);
    }
    verify = native!;
  });

  it('Should verify the RFC 6979 P-256/SHA-256 and P-384/SHA-384 "sample" signatures, as node:crypto does', () => {
    const vectors: Array<[Curve, Hash, string, string, string, string]> = [
      [
        'P-256',
        'sha256',
        '60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6',
        '7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299',
        'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716',
        'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8',
      ],
      [
        'P-384',
        'sha384',
        'ec3a4e415b4e19a4568618029f427fa5da9a8bc4ae92e02e06aae5286b300c64def8f0ea9055866064a254515480bc13',
        '8015d9b72d7d57244ea8ef9ac0c621896708a59367f9dfb9f54ca84b3f1c9db1288b231c3ae0d4fe7344fd2533264720',
        '94edbb92a5ecb8aad4736e56c691916b3f88140666ce9fa73d64c4ea95ad133c81a648152e44acf96e36dd1e80fabe46',
        '99ef4aeb15f178cea1fe40db2603138f130e740a19624526203b6351d0a3a94fa329c145786e679e7b82c71a38628ac8',
      ],
    ];
    for (const [curve, hash, x, y, r, s] of vectors) {
      const point = Buffer.concat([Buffer.from([0x04]), Buffer.from(x, 'hex'), Buffer.from(y, 'hex')]);
      const sig = ecdsaSig(r, s);
      const sample = Buffer.from('sample');
      expect(nodeVerdict(curve, point, hash, sample, sig), `${curve} node:crypto`).to.equal(1);
      expect(verify(CURVE_ARG[curve], point, NATIVE_HASH[hash], sample, sig), `${curve} native`).to.equal(1);
      expect(verify(CURVE_ARG[curve], point, NATIVE_HASH[hash], Buffer.from('test'), sig), `${curve} other message`).to.equal(0);
    }
  });

  const pairs: Array<[Curve, Hash]> = [
    ['P-256', 'sha256'],
    ['P-256', 'sha384'],
    ['P-256', 'sha512'],
    ['P-384', 'sha384'],
    ['P-384', 'sha256'],
    ['P-384', 'sha512'],
  ];
  for (const [curve, hash] of pairs) {
    it(`Should agree with node:crypto on good, tampered and malformed ${curve}/${hash} signatures`, () => {
      const k = freshKey(curve);
      const msg = Buffer.from(`tbs bytes for ${curve} ${hash}`);
      const sig = cryptoSign(hash, msg, k.privateKey);
      const high = highS(curve, sig);
      const cases: Array<[string, Buffer, Buffer, NativeVerdict]> = [
        ['good', msg, sig, 1],
        ['tampered message', flipBit(msg, 5), sig, 0],
        ['tampered signature', flipBit(sig, sig.length * 8 - 1), sig, 0],
        ['signature with trailing byte', msg, Buffer.concat([sig, Buffer.from([0])]), 0],
        ['truncated signature', msg, sig.subarray(0, sig.length - 1), 0],
        ['empty signature', msg, Buffer.alloc(0), 0],
        ['r = s = 0', msg, der.sequence(der.integer(0), der.integer(0)), 0],
        ['garbage signature', msg, Buffer.alloc(sig.length, 0x5a), 0],
        ['high-S twin of a good signature', msg, high, 1],
        ['non-minimal INTEGER encoding', msg, nonMinimal(sig), 0],
      ];
      for (const [name, m, s, want] of cases) {
        const node = nodeVerdict(curve, k.point, hash, m, s);
        const native = verify(CURVE_ARG[curve], k.point, NATIVE_HASH[hash], m, s);
        expect(native, name).to.equal(node);
        expect(native, name).to.equal(want);
      }
    });
  }

  it('Should refuse as a key every point that is not an uncompressed point on the named curve, as node:crypto does', () => {
    for (const curve of ['P-256', 'P-384'] as const) {
      const k = freshKey(curve);
      const other = freshKey(curve === 'P-256' ? 'P-384' : 'P-256');
      const size = SIZE[curve];
      const msg = Buffer.from('message');
      const sig = cryptoSign('sha256', msg, k.privateKey);
      const p = Buffer.from(FIELD_PRIME[curve], 'hex');
      const compressed = Buffer.concat([Buffer.from([0x02 | (k.point[k.point.length - 1]! & 1)]), k.point.subarray(1, 1 + size)]);
      const points: Array<[string, Buffer]> = [
        ['y off by one bit (not on the curve)', flipBit(k.point, (k.point.length - 1) * 8)],
        ['x off by one bit (not on the curve)', flipBit(k.point, 8 * 2)],
        ['the compressed form of a valid point', compressed],
        ['a point of the other curve', other.point],
        ['the point at infinity', Buffer.from([0x00])],
        ['04 and zeros', Buffer.concat([Buffer.from([0x04]), Buffer.alloc(2 * size)])],
        ['x = p (outside the field)', Buffer.concat([Buffer.from([0x04]), p, k.point.subarray(1 + size)])],
        ['y all ones (outside the field)', Buffer.concat([Buffer.from([0x04]), k.point.subarray(1, 1 + size), Buffer.alloc(size, 0xff)])],
        ['hybrid 06 prefix', Buffer.concat([Buffer.from([0x06 | (k.point[k.point.length - 1]! & 1)]), k.point.subarray(1)])],
        ['one byte short', k.point.subarray(0, k.point.length - 1)],
        ['empty', Buffer.alloc(0)],
      ];
      for (const [name, point] of points) {
        expect(verify(CURVE_ARG[curve], point, 0, msg, sig), `${curve}: ${name}`).to.equal(-1);
        expect(nodeVerdict(curve, point, 'sha256', msg, sig), `${curve}: ${name} (node:crypto)`).to.equal(-1);
      }
      expect(verify(CURVE_ARG[curve], k.point, 0, msg, sig), `${curve}: the untouched point`).to.equal(1);
    }
  });

  it('Should leave no OpenSSL error behind for node:crypto after refusing a key or a signature', () => {
    const k = freshKey('P-256');
    const msg = Buffer.from('m');
    expect(verify(0, flipBit(k.point, 520), 0, msg, Buffer.alloc(8))).to.equal(-1);
    expect(verify(0, k.point, 0, msg, Buffer.from([0x30, 0x01]))).to.equal(0);
    const again = freshKey('P-384');
    expect(cryptoVerify('sha384', msg, again.key, cryptoSign('sha384', msg, again.privateKey))).to.equal(true);
  });

  it('Should keep per-thread state: worker threads verifying at the same time as the main thread all get the right verdicts', async () => {
    const k = freshKey('P-256');
    const msg = Buffer.from('concurrent');
    const sig = cryptoSign('sha256', msg, k.privateKey);
    const bad = flipBit(k.point, 8 * (k.point.length - 1));
    const source = `
      const { workerData, parentPort } = require('node:worker_threads');
      const { verify } = require(${JSON.stringify(NATIVE_ECDSA_PACKAGE)});
      const p = Buffer.from(workerData.point), b = Buffer.from(workerData.bad), m = Buffer.from(workerData.msg), s = Buffer.from(workerData.sig);
      let good = 0, refused = 0;
      for (let i = 0; i < 3000; i++) { good += verify(0, p, 0, m, s) === 1 ? 1 : 0; refused += verify(0, b, 0, m, s) === -1 ? 1 : 0; }
      parentPort.postMessage({ good, refused });`;
    const workers = [0, 1].map(() => new Worker(source, { eval: true, workerData: { point: k.point, bad, msg, sig } }));
    const results = workers.map((w) => new Promise<{ good: number; refused: number }>((resolve, reject) => w.once('message', resolve).once('error', reject)));
    let good = 0;
    for (let i = 0; i < 3000; i++) good += verify(0, k.point, 0, msg, sig) === 1 ? 1 : 0;
    expect(good).to.equal(3000);
    for (const r of await Promise.all(results)) expect(r).to.deep.equal({ good: 3000, refused: 3000 });
    await Promise.all(workers.map((w) => w.terminate()));
  });

  it('Should throw a TypeError for arguments of the wrong type rather than guess', () => {
    const k = freshKey('P-256');
    const call = verify as unknown as (...args: unknown[]) => unknown;
    expect(() => call(2, k.point, 0, Buffer.alloc(1), Buffer.alloc(1))).to.throw(TypeError);
    expect(() => call(0, k.point, 3, Buffer.alloc(1), Buffer.alloc(1))).to.throw(TypeError);
    expect(() => call(0, 'point', 0, Buffer.alloc(1), Buffer.alloc(1))).to.throw(TypeError);
    expect(() => call(0, k.point, 0, 'message', Buffer.alloc(1))).to.throw(TypeError);
    expect(() => call(0, k.point, 0, Buffer.alloc(1))).to.throw(TypeError);
  });

  it('Should give the same verdict as node:crypto for random messages, keys and single-bit mutations (property)', () => {
    const keys = [freshKey('P-256'), freshKey('P-256'), freshKey('P-384'), freshKey('P-384')];
    const hashes: Hash[] = ['sha256', 'sha384', 'sha512'];
    fc.assert(
      fc.property(
        fc.nat({ max: keys.length - 1 }),
        fc.nat({ max: 2 }),
        fc.uint8Array({ maxLength: 600 }),
        fc.constantFrom('none', 'message', 'signature', 'point', 'random-signature', 'random-point', 'truncate-signature'),
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 120 }),
        (ki, hi, bytes, mutation, at, random) => {
          const k = keys[ki]!;
          const hash = hashes[hi]!;
          let msg: Buffer = Buffer.from(bytes);
          let sig: Buffer = cryptoSign(hash, msg, k.privateKey);
          let point: Buffer = k.point;
          if (mutation === 'message') msg = msg.length > 0 ? flipBit(msg, at % (msg.length * 8)) : Buffer.from([1]);
          if (mutation === 'signature') sig = flipBit(sig, at % (sig.length * 8));
          if (mutation === 'point') point = flipBit(point, 8 + (at % ((point.length - 1) * 8)));
          if (mutation === 'random-signature') sig = Buffer.from(random);
          if (mutation === 'random-point') point = Buffer.concat([Buffer.from([0x04]), Buffer.from(random), Buffer.alloc(Math.max(0, point.length - 1 - random.length))]).subarray(0, point.length);
          if (mutation === 'truncate-signature') sig = sig.subarray(0, at % sig.length);
          const native = verify(CURVE_ARG[k.curve], point, NATIVE_HASH[hash], msg, sig);
          expect(native).to.equal(nodeVerdict(k.curve, point, hash, msg, sig));
          if (mutation === 'none') expect(native).to.equal(1);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('Loading the native ECDSA verifier', () => {
  it('Should return null (node:crypto is used) when the addon cannot be loaded', () => {
    expect(
      loadNativeEcdsaVerify(() => {
        throw Object.assign(new Error(`Cannot find module '${NATIVE_ECDSA_PACKAGE}'`), { code: 'MODULE_NOT_FOUND' });
      }),
    ).to.equal(null);
  });

  it('Should return null when the addon was not built (its verify is null)', () => {
    expect(loadNativeEcdsaVerify(() => ({ verify: null, loadError: new Error('not built') }))).to.equal(null);
    expect(loadNativeEcdsaVerify(() => ({}))).to.equal(null);
  });

  it('Should refuse an addon that accepts everything, refuses everything or throws, by its self-test', () => {
    expect(loadNativeEcdsaVerify(() => ({ verify: () => 1 }))).to.equal(null);
    expect(loadNativeEcdsaVerify(() => ({ verify: () => 0 }))).to.equal(null);
    expect(loadNativeEcdsaVerify(() => ({ verify: (_c: number, _p: Buffer, _h: number, m: Buffer) => (m.length > 0 ? 1 : 0) }))).to.equal(null);
    expect(
      loadNativeEcdsaVerify(() => ({
        verify: () => {
          throw new Error('boom');
        },
      })),
    ).to.equal(null);
  });

  it('Should accept a verifier that behaves like ECDSA, here node:crypto behind the same interface', () => {
    const viaNode: NativeEcdsaVerify = (curve, point, hash, message, sig) => nodeVerdict(curve === 0 ? 'P-256' : 'P-384', point, (['sha256', 'sha384', 'sha512'] as const)[hash], message, sig);
    expect(loadNativeEcdsaVerify(() => ({ verify: viaNode }))).to.equal(viaNode);
  });
});

/** The same signature with s replaced by n - s (valid too: ECDSA verification does not require low S). */
function highS(curve: Curve, sig: Buffer): Buffer {
  const n = BigInt('0x' + (curve === 'P-256' ? 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551' : 'ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973'));
  const seq = der.readWhole(sig, 0x30, 'sig');
  const r = der.expectTlv(sig, seq.start, 0x02, 'r', seq.end);
  const s = der.expectTlv(sig, r.end, 0x02, 's', seq.end);
  const sv = BigInt('0x' + sig.subarray(s.start, s.end).toString('hex'));
  return der.sequence(der.encoded(sig, r), der.integer(n - sv));
}

/** The same signature with r given a redundant leading zero byte (BER, not DER). */
function nonMinimal(sig: Buffer): Buffer {
  const seq = der.readWhole(sig, 0x30, 'sig');
  const r = der.expectTlv(sig, seq.start, 0x02, 'r', seq.end);
  const rest = sig.subarray(r.end, seq.end);
  const rBytes = sig.subarray(r.start, r.end);
  const padded = Buffer.concat([Buffer.from([0x02, rBytes.length + 1, 0x00]), rBytes]);
  return der.sequence(padded, rest);
}
