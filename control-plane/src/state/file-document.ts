/**
 * A {@link SharedDocument} in one file: re-read when its stamp (mtime,
 * size, inode) changes, updated under a lock file beside it
 * (state/file-lock.ts) with an atomic write (state/atomic-file.ts). Every
 * process on the same directory (replicas, the CLI) sees the same document.
 */
import { readFileSync } from 'node:fs';
import { fileStamp } from './file-stamp';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { withFileLockSync } from './file-lock';
import { writeFileAtomic } from './atomic-file';
import type { DocumentCodec, SharedDocument } from './shared-document';

/** Reads `path` with `codec`; the empty document when it does not exist. */
export function readDocumentFile<T>(path: string, codec: DocumentCodec<T>): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return codec.empty;
    throw err;
  }
  return codec.parse(text, path);
}

/** Settings of a {@link FileDocument}. */
export interface FileDocumentOptions {
  /** File mode (default 0o644). */
  mode?: number;
  /** The lock file (default `<path>.lock`). */
  lockPath?: string;
  /** How long an update waits for another process's (default 5 s). */
  lockWaitMs?: number;
  /** Told when the file could not be read or parsed (the last good document stays). */
  onError?(err: Error): void;
  /** The error to throw when the lock stays taken. */
  busy?(owner: number | null): Error;
}

/** A shared document in a file. */
export class FileDocument<T> implements SharedDocument<T> {
  private doc: T;
  private stamp = '';
  private readonly listeners = new Set<(doc: T) => void>();

  constructor(
    /** The file. */
    readonly path: string,
    private readonly codec: DocumentCodec<T>,
    private readonly opts: FileDocumentOptions = {},
  ) {
    this.doc = codec.empty;
    this.reread();
  }

  current(): T {
    return this.doc;
  }

  async refresh(): Promise<boolean> {
    return this.reread();
  }

  async update(change: (doc: T) => T): Promise<T> {
    return this.updateSync(change);
  }

  /** {@link update}, synchronously (for the CLI). */
  updateSync(change: (doc: T) => T): T {
    // What `change` throws (a refused change) passes as it is; a failed lock or write becomes STATE_WRITE_FAILED.
    let refused: { err: unknown } | null = null;
    let next: T;
    try {
      next = withFileLockSync(this.opts.lockPath ?? `${this.path}.lock`, () => {
        let doc: T;
        try {
          doc = change(readDocumentFile(this.path, this.codec));
        } catch (err) {
          refused = { err };
          throw err;
        }
        writeFileAtomic(this.path, this.codec.format(doc), this.opts.mode ?? 0o644);
        return doc;
      }, { waitMs: this.opts.lockWaitMs ?? 5000, busy: this.opts.busy ?? ((owner) => Object.assign(new Error(`locked by ${owner === null ? 'another process' : `pid ${owner}`}`), { code: 'LOCKED' })) });
    } catch (err) {
      if (refused) throw (refused as { err: unknown }).err;
      const reason = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ControlPlaneError(ControlPlaneErrorCode.STATE_WRITE_FAILED, `${this.path}: not written (${reason}): ${(err as Error).message}; the previous content stays`, { file: this.path, reason }, { cause: err });
    }
    this.reread();
    return next;
  }

  subscribe(listener: (doc: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.listeners.clear();
  }

  private reread(): boolean {
    const stamp = fileStamp(this.path);
    if (stamp === this.stamp) return false;
    this.stamp = stamp;
    try {
      this.doc = readDocumentFile(this.path, this.codec);
    } catch (err) {
      // Keep the last good document; the next change of the file is read again.
      this.opts.onError?.(err as Error);
      return false;
    }
    for (const l of this.listeners) l(this.doc);
    return true;
  }
}
