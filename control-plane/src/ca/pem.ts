/**
 * PEM in and out, strict about the block type so a key is never mistaken for
 * a certificate. Errors are TRELLIS_CA_BAD_PEM naming the source.
 */
import { CaError, CaErrorCode } from './ca-error';

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/=\s]*$/;

/** Every PEM block in `text` whose label is one of `labels`, as DER. */
export function pemBlocks(text: string, labels: readonly string[], source: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(BLOCK)) {
    if (!labels.includes(m[1]!)) continue;
    const body = m[2]!;
    if (!BASE64.test(body)) throw new CaError(CaErrorCode.BAD_PEM, `${source}: ${m[1]} block has characters outside base64`, { file: source });
    const der = Buffer.from(body, 'base64');
    if (der.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: empty ${m[1]} block`, { file: source });
    out.push(der);
  }
  return out;
}

/** Exactly one block of the given label(s); BAD_PEM if none (or several and `single`). */
export function pemBlock(text: string, labels: readonly string[], source: string): Buffer {
  const all = pemBlocks(text, labels, source);
  if (all.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: no ${labels[0]} PEM block found`, { file: source });
  if (all.length > 1) throw new CaError(CaErrorCode.BAD_PEM, `${source}: expected one ${labels[0]} block, found ${all.length}`, { file: source });
  return all[0]!;
}

/** Every CERTIFICATE block in `text` (at least one). */
export function pemCertificates(text: string, source: string): Buffer[] {
  const all = pemBlocks(text, ['CERTIFICATE'], source);
  if (all.length === 0) throw new CaError(CaErrorCode.BAD_PEM, `${source}: no CERTIFICATE PEM block found`, { file: source });
  return all;
}

/** DER to PEM with 64-column lines. */
export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
