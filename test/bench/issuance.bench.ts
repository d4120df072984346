/**
 * `npm run bench -- issuance`: X.509-SVIDs issued per second on one core,
 * beside the raw node:crypto ECDSA P-256 sign and verify rates measured in
 * the same run. `limit_per_s = 1 / (1/sign + 1/verify)` is what one CSR
 * verify plus one certificate sign allow; `ratio` is our rate over it.
 *
 * With node:crypto on Node 20 every CSR also costs a public-key import
 * (OpenSSL checks the point, including its order, on import), which the raw
 * verify rate does not include: `csr_verify_per_s` measures import + verify
 * of a fresh key, and `limit_with_key_import_per_s` / `ratio_with_key_import`
 * say how close issuance gets to what node:crypto can do per CSR at all.
 *
 * With the optional native verifier (`@trellis/ecdsa-verify`, built at
 * install from control-plane/native) the CA skips that import: `verifier`
 * says which path issuance used (`native` or `node`), and when the addon is
 * there `native_csr_verify_per_s` measures its verify of a fresh key's
 * signature from the raw point, with `limit_native_per_s` / `ratio_native`
 * the same limit and ratio for it. `ratio_with_key_import` above 1 then only
 * says issuance no longer pays for the import.
 *
 * Issuance here is the real path: CSR parse + signature check, policy,
 * template fill, sign, post-sign profile check, audit-log append. Rounds of
 * the three measurements alternate and the best round of each is kept, so a
 * noisy neighbour slows all three alike. Flags: `--seconds=N` per round
 * (default 0.5), `--rounds=N` (default 6).
 */
import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initCertificateAuthority, loadCertificateAuthority } from '@trellis/control-plane';
import { der } from '@trellis/shared';
import { numberFlag } from './bench-flags';
import { measureHsmIssuance } from './issuance-hsm';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

/** A minimal PKCS#10 CSR (empty subject, no attributes) for a fresh P-256 key. */
function makeCsr(): Buffer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const info = der.sequence(der.integer(0), der.sequence(), spki, der.tlv(0xa0));
  const signature = sign('sha256', info, privateKey);
  return der.sequence(info, der.sequence(der.oid(ECDSA_WITH_SHA256)), der.bitString(signature));
}

type NativeVerify = (curve: 0 | 1, point: Buffer, hash: 0 | 1 | 2, message: Buffer, signature: Buffer) => number;

/** The optional addon's verify, or null when it is not built (the bench then reports the node:crypto path only). */
function loadNativeVerify(): NativeVerify | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('@trellis/ecdsa-verify') as { verify: NativeVerify | null }).verify;
  } catch {
    return null;
  }
}

function rateSync(seconds: number, fn: () => void): number {
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  let n = 0;
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 32; i++) fn();
    n += 32;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function rateAsync(seconds: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const start = process.hrtime.bigint();
  let n = 0;
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 32; i++) await fn(n + i);
    n += 32;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Runs the benchmark; the runner prints `{"bench":"issuance",...}`. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const seconds = numberFlag(flags, 'seconds', 0.5);
  const rounds = numberFlag(flags, 'rounds', 6);
  const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-ca-'));
  try {
    const dir = join(tmp, 'ca');
    await initCertificateAuthority(dir, { trustDomain: 'bench.local', keyType: 'ec-p256' });
    const ca = await loadCertificateAuthority(dir);
    const csrs = Array.from({ length: 256 }, makeCsr);
    const ids = Array.from({ length: 64 }, (_, i) => `spiffe://bench.local/ns/ns-${i % 8}/sa/sa-${i}`);

    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const tbsLike = Buffer.alloc(420, 0x5a);
    const sig = sign('sha256', tbsLike, privateKey);
    const fresh = Array.from({ length: 256 }, () => {
      const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return { jwk: kp.publicKey.export({ format: 'jwk' }), sig: sign('sha256', tbsLike, kp.privateKey) };
    });
    let freshNext = 0;
    const native = loadNativeVerify();
    const freshPoints = fresh.map((f) => Buffer.concat([Buffer.from([0x04]), Buffer.from(f.jwk.x!, 'base64url'), Buffer.from(f.jwk.y!, 'base64url')]));
    const nativeVerify = (): void => {
      const i = freshNext++ % fresh.length;
      if (native!(0, freshPoints[i]!, 0, tbsLike, fresh[i]!.sig) !== 1) throw new Error('native verify failed');
    };
    const importAndVerify = (): void => {
      const f = fresh[freshNext++ % fresh.length]!;
      if (!verify('sha256', tbsLike, createPublicKey({ key: f.jwk, format: 'jwk' }), f.sig)) throw new Error('fresh verify failed');
    };
    const signOnce = (k: KeyObject) => sign('sha256', tbsLike, k);

    // Sanity: what we time must work.
    const first = await ca.issue({ csr: csrs[0]!, spiffeId: ids[0]!, requester: 'bench' });
    if (!first.leafPem.startsWith('-----BEGIN CERTIFICATE-----')) throw new Error('issuance produced no certificate');
    if (!verify('sha256', tbsLike, publicKey, sig)) throw new Error('raw verify failed');

    let signBest = 0;
    let verifyBest = 0;
    let svidBest = 0;
    let csrVerifyBest = 0;
    let nativeBest = 0;
    for (let r = 0; r < rounds; r++) {
      svidBest = Math.max(svidBest, await rateAsync(seconds, (i) => ca.issue({ csr: csrs[i % csrs.length]!, spiffeId: ids[i % ids.length]!, requester: 'bench' })));
      signBest = Math.max(signBest, rateSync(seconds, () => signOnce(privateKey)));
      verifyBest = Math.max(verifyBest, rateSync(seconds, () => verify('sha256', tbsLike, publicKey, sig)));
      csrVerifyBest = Math.max(csrVerifyBest, rateSync(seconds, importAndVerify));
      if (native) nativeBest = Math.max(nativeBest, rateSync(seconds, nativeVerify));
    }
    ca.close();
    const limit = 1 / (1 / signBest + 1 / verifyBest);
    const limitWithImport = 1 / (1 / signBest + 1 / csrVerifyBest);
    return {
      svids_per_s: Math.round(svidBest),
      sign_per_s: Math.round(signBest),
      verify_per_s: Math.round(verifyBest),
      limit_per_s: Math.round(limit),
      ratio: Number((svidBest / limit).toFixed(3)),
      target_per_s: 5000,
      csr_verify_per_s: Math.round(csrVerifyBest),
      limit_with_key_import_per_s: Math.round(limitWithImport),
      ratio_with_key_import: Number((svidBest / limitWithImport).toFixed(3)),
      verifier: ca.csrVerifier,
      ...(native
        ? {
            native_csr_verify_per_s: Math.round(nativeBest),
            limit_native_per_s: Math.round(1 / (1 / signBest + 1 / nativeBest)),
            ratio_native: Number((svidBest / (1 / (1 / signBest + 1 / nativeBest))).toFixed(3)),
          }
        : {}),
      rounds,
      seconds_per_round: seconds,
      // The same CA with its intermediate key in a PKCS#11 token (SoftHSM2), measured in this run.
      hsm: await measureHsmIssuance(flags).catch((err: Error) => ({ skipped: err.message })),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
