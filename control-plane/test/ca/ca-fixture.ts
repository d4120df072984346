/** A CA dir made with the real `initCertificateAuthority`, for tests; removed with `cleanup()`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl } from '@trellis/testkit';
import { initCertificateAuthority, type InitOptions } from '../../src/ca/ca-setup';

export interface CaFixture {
  dir: string;
  tmp: string;
  cleanup(): void;
  read(name: string): string;
}

/** Creates a CA under a fresh temp dir (`<tmp>/ca`). */
export async function makeCaFixture(opts: InitOptions = {}): Promise<CaFixture> {
  const t = makeTmpDir('trellis-ca-');
  const dir = join(t.dir, 'ca');
  await initCertificateAuthority(dir, { trustDomain: 'example.org', ...opts });
  return { dir, tmp: t.dir, cleanup: t.cleanup, read: (n) => readFileSync(join(dir, n), 'utf8') };
}

/**
 * `openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem`
 * (plus `-purpose` when given); returns status and combined output.
 */
export function opensslVerify(fx: CaFixture, leafPem: string, extra: string[] = []): { status: number; out: string } {
  const leaf = join(fx.tmp, `leaf-${Math.random().toString(16).slice(2)}.pem`);
  writeFileSync(leaf, leafPem);
  const r = openssl(['verify', ...extra, '-CAfile', join(fx.dir, 'root.pem'), '-untrusted', join(fx.dir, 'intermediate.pem'), leaf]);
  return { status: r.status, out: r.stdout + r.stderr };
}

/** `openssl x509 -noout -text` of a PEM certificate. */
export function opensslText(pem: string): string {
  const r = openssl(['x509', '-noout', '-text'], pem);
  if (r.status !== 0) throw new Error(`openssl x509 failed: ${r.stderr}`);
  return r.stdout;
}
