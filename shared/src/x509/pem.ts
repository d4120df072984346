/**
 * PEM (RFC 7468) encoding and decoding.
 *
 * Real-world PEM files mix blocks (certificate + key, chains) and carry junk
 * between them (openssl's `subject=` lines, comments); we read every
 * `-----BEGIN X-----` ... `-----END X-----` block and ignore text outside blocks.
 * Inside a block we are strict: matching END label, no RFC 1421 headers, and
 * only base64 characters, so a damaged file fails loudly instead of decoding
 * to different bytes.
 */
import { X509Error, X509ErrorCode } from './x509-error';

/** One decoded PEM block. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE`, `PRIVATE KEY`, `CERTIFICATE REQUEST`. */
  readonly label: string;
  /** The decoded bytes. */
  readonly der: Buffer;
  /** 1-based line of the BEGIN line, for error messages. */
  readonly line: number;
}

const BEGIN = /^-----BEGIN ([A-Z0-9 ]*)-----\s*$/;
const END = /^-----END ([A-Z0-9 ]*)-----\s*$/;
const B64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Every PEM block in `input`, in order.
 *
 * Returns `[]` for empty or whitespace-only input. Throws {@link X509Error}:
 * `TRELLIS_X509_NOT_PEM` when there is text but no block at all,
 * `TRELLIS_X509_BAD_PEM` for a broken block (the message gives its line).
 * `source` (a file name) is only used in messages.
 */
export function pemBlocks(input: string | Buffer, source = 'input'): PemBlock[] {
  const text = typeof input === 'string' ? input : input.toString('latin1');
  const lines = text.split(/\r?\n/);
  const out: PemBlock[] = [];
  let sawText = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const begin = BEGIN.exec(line);
    if (!begin) {
      if (line.length > 0) sawText = true;
      continue;
    }
    const label = begin[1]!;
    const startLine = i + 1;
    const body: string[] = [];
    let ended = false;
    for (i++; i < lines.length; i++) {
      const l = lines[i]!.trim();
      const end = END.exec(l);
      if (end) {
        if (end[1] !== label) {
          throw new X509Error(X509ErrorCode.BAD_PEM, `${source}: PEM block "${label}" at line ${startLine} ends with "END ${end[1]}" at line ${i + 1}`, {
            source,
            line: i + 1,
          });
        }
        ended = true;
        break;
      }
      if (BEGIN.test(l)) break;
      if (l.includes(':')) {
        throw new X509Error(X509ErrorCode.BAD_PEM, `${source}: PEM block "${label}" at line ${startLine} has RFC 1421 headers (encrypted or legacy PEM is not supported)`, {
          source,
          line: i + 1,
        });
      }
      if (!B64_LINE.test(l)) {
        throw new X509Error(X509ErrorCode.BAD_PEM, `${source}: invalid base64 in PEM block "${label}" at line ${i + 1}`, { source, line: i + 1 });
      }
      body.push(l);
    }
    if (!ended) {
      throw new X509Error(X509ErrorCode.BAD_PEM, `${source}: PEM block "${label}" at line ${startLine} has no END line`, { source, line: startLine });
    }
    const b64 = body.join('');
    if (b64.length % 4 !== 0 || /=[^=]/.test(b64)) {
      throw new X509Error(X509ErrorCode.BAD_PEM, `${source}: PEM block "${label}" at line ${startLine} has truncated base64`, { source, line: startLine });
    }
    out.push(Object.freeze({ label, der: Buffer.from(b64, 'base64'), line: startLine }));
  }
  if (out.length === 0 && sawText) {
    throw new X509Error(X509ErrorCode.NOT_PEM, `${source}: no PEM blocks found`, { source });
  }
  return out;
}

/**
 * The DER of every block labelled `label` (default `CERTIFICATE`), in order;
 * blocks with other labels are skipped. Same errors as {@link pemBlocks}.
 */
export function pemToDer(input: string | Buffer, label = 'CERTIFICATE', source = 'input'): Buffer[] {
  return pemBlocks(input, source)
    .filter((b) => b.label === label)
    .map((b) => b.der);
}

/** PEM-encodes `der` under `label` with 64-character lines and a final newline. */
export function derToPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/**
 * Every CERTIFICATE block of `input` as its own PEM (re-encoded: 64-column
 * lines, final newline), in order; other blocks are skipped. For handing a
 * chain or a bundle to a TLS stack one certificate at a time. Same errors as
 * {@link pemBlocks}.
 */
export function certificatePems(input: string | Buffer, source = 'input'): string[] {
  return pemToDer(input, 'CERTIFICATE', source).map((der) => derToPem(der));
}
