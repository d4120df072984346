/**
 * PEM in the CA's files, over the shared reader (shared/src/x509/pem.ts),
 * strict about the block type so a key is never mistaken for a certificate.
 * Errors are TRELLIS_CA_BAD_PEM naming the source.
 */
import { pemBlocks as readPemBlocks, X509Error, X509ErrorCode } from '@trellis/shared';
import { CaError, CaErrorCode } from './ca-error';

/** Every PEM block in `text` whose label is one of `labels`, as DER. */
function blocksOf(text: string, labels: readonly string[], source: string): Buffer[] {
  let all;
  try {
    all = readPemBlocks(text, source);
  } catch (err) {
    if (err instanceof X509Error && err.code === X509ErrorCode.NOT_PEM) return [];
    if (err instanceof X509Error) throw new CaError(CaErrorCode.BAD_PEM, err.message, { file: source }, { cause: err });
    throw err;
  }
  const out = all.filter((b) => labels.includes(b.label));
  for (const b of out) if (b.der.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: empty ${b.label} block`, { file: source });
  return out.map((b) => b.der);
}

/** Exactly one block of the given label(s); BAD_PEM if none (or several). */
export function pemBlock(text: string, labels: readonly string[], source: string): Buffer {
  const all = blocksOf(text, labels, source);
  if (all.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: no ${labels[0]} PEM block found`, { file: source });
  if (all.length > 1) throw new CaError(CaErrorCode.BAD_PEM, `${source}: expected one ${labels[0]} block, found ${all.length}`, { file: source });
  return all[0]!;
}

/** Every CERTIFICATE block in `text` (at least one). */
export function pemCertificates(text: string, source: string): Buffer[] {
  const all = blocksOf(text, ['CERTIFICATE'], source);
  if (all.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: no CERTIFICATE PEM block found`, { file: source });
  return all;
}
