/**
 * The control plane's own SVID, `spiffe://<td>/ns/trellis-system/sa/trellis-control-plane`:
 * a fresh key and CSR, signed by the CA it holds, rotated at half its lifetime
 * like any workload's. The key stays in this process (memory only).
 */
import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import { buildWorkloadCsr } from '@trellis/shared';

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * True once half of the certificate's usable lifetime has passed (fails towards rotating).
 * The window starts at `installedAtMs` when that is later than notBefore: the CA back-dates
 * notBefore by a clock-skew allowance, which for a one-minute certificate would otherwise
 * put the half-way point at the moment of issue and renew it in a loop.
 */
export function shouldRotate(nowMs: number, notBefore: Date, notAfter: Date, installedAtMs = 0): boolean {
  const nb = Math.max(notBefore.getTime(), installedAtMs);
  const na = notAfter.getTime();
  if (!(na > nb)) return true;
  return nowMs >= nb + (na - nb) / 2;
}

/** A new P-256 key and a DER CSR carrying `spiffeId` as its only URI SAN (the shared workload CSR, as every sidecar sends). */
export async function createKeyAndCsr(spiffeId: string): Promise<{ keyPem: string; csrDer: Buffer }> {
  const { privateKey, publicKey } = await generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  const csrDer = buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }), spiffeId);
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, csrDer };
}
