/**
 * Where the webhook's serving certificate comes from, behind one interface so
 * the server can swap it whole on rotation without a restart.
 *
 * `FileCertSource` re-reads `--cert/--key` when either file changes (polling,
 * since cert-manager and kubelet replace Secret volumes through symlink swaps
 * that inotify watchers miss). A pair that does not parse, or whose key does
 * not match the certificate, is refused and the previous pair keeps serving.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from '@trellis/shared';
import { InjectorError } from '../errors/injector-error';

/** A PEM certificate chain and its private key. */
export interface ServingPair {
  readonly certPem: string;
  readonly keyPem: string;
  /** Leaf validity, for logs and rotation. */
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Leaf serial (hex), for logs. */
  readonly serial: string;
}

/** A source of serving pairs that may change over time. */
export interface CertSource {
  current(): ServingPair;
  /** Called with each new pair after it was validated. */
  onChange(listener: (pair: ServingPair) => void): void;
  close(): void;
}

/**
 * Checks a PEM pair: the first certificate parses, the key parses and matches
 * it. Throws TRELLIS_INJECTOR_BAD_CERT naming `source`.
 */
export function validateServingPair(certPem: string, keyPem: string, source: string): ServingPair {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (err) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `${source}: certificate is not valid PEM`, { source }, { cause: err });
  }
  try {
    const key = createPrivateKey(keyPem);
    if (!leaf.checkPrivateKey(key)) throw new Error('mismatch');
  } catch (err) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `${source}: private key is not valid PEM or does not match the certificate`, { source }, { cause: err });
  }
  return Object.freeze({ certPem, keyPem, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), serial: leaf.serialNumber });
}

/** Options of the file source. */
export interface FileCertSourceOptions {
  certFile: string;
  keyFile: string;
  /** Poll interval in ms (default 2000). */
  intervalMs?: number;
  logger: Logger;
}

/** Serving pair from two files, reloaded on change; a bad reload keeps the last good pair. */
export class FileCertSource implements CertSource {
  private pair: ServingPair;
  private readonly listeners: Array<(p: ServingPair) => void> = [];
  private readonly onFileChange = (): void => this.reload();

  /** Reads and validates the files now; throws TRELLIS_INJECTOR_BAD_CERT if they are unusable. */
  constructor(private readonly options: FileCertSourceOptions) {
    this.pair = this.read();
    const interval = options.intervalMs ?? 2000;
    watchFile(options.certFile, { interval, persistent: false }, this.onFileChange);
    watchFile(options.keyFile, { interval, persistent: false }, this.onFileChange);
  }

  current(): ServingPair {
    return this.pair;
  }

  onChange(listener: (pair: ServingPair) => void): void {
    this.listeners.push(listener);
  }

  /** Re-reads the files; on success swaps the pair and notifies, on failure logs and keeps the old one. */
  reload(): void {
    let next: ServingPair;
    try {
      next = this.read();
    } catch (err) {
      this.options.logger.warn('serving certificate reload refused; keeping the current one', { error: err, serial: this.pair.serial });
      return;
    }
    if (next.certPem === this.pair.certPem && next.keyPem === this.pair.keyPem) return;
    this.pair = next;
    this.options.logger.info('serving certificate reloaded', { serial: next.serial, notAfter: next.notAfter.toISOString() });
    for (const l of this.listeners) l(next);
  }

  close(): void {
    unwatchFile(this.options.certFile, this.onFileChange);
    unwatchFile(this.options.keyFile, this.onFileChange);
  }

  private read(): ServingPair {
    let cert: string;
    let key: string;
    try {
      cert = readFileSync(this.options.certFile, 'utf8');
      key = readFileSync(this.options.keyFile, 'utf8');
    } catch (err) {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `cannot read ${this.options.certFile} / ${this.options.keyFile}: ${(err as Error).message}`, {}, { cause: err });
    }
    return validateServingPair(cert, key, this.options.certFile);
  }
}
