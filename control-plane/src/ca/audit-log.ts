/**
 * The CA's audit log, `audit.log` in the CA dir: one JSON line per issued
 * SVID and per lifecycle step, hash-chained (audit-chain.ts) so a removed or
 * edited record is detected by `trellis audit verify`, and SIEM-friendly
 * (JSON lines, one object each). Lines hold serials, SPIFFE IDs, times and
 * requesters; never a key, a CSR or a certificate.
 *
 * Durable before anything is handed out: an append resolves only once its
 * record is written whole and fdatasynced. A write that fails (a full disk)
 * is cut back to the previous end of the file, so no torn record stays, and
 * the append rejects with TRELLIS_CA_AUDIT_WRITE_FAILED; the CA then returns
 * no certificate. The next append tries again from scratch, so issuance
 * resumes by itself once space is back.
 *
 * Appends from every process on the CA dir (the control plane, `trellis ca
 * sign`, `trellis revoke`) are serialised by a lock file beside the log
 * (state/file-lock.ts), and each reads the chain's head from the file when
 * someone else wrote since, so the chain never forks. Appends that arrive
 * in the same event-loop turn share one write and one fdatasync.
 */
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { withFileLockSync } from '../state/file-lock';
import { chainRecord, recordHash } from './audit-chain';
import { CaError, CaErrorCode } from './ca-error';

/** One issuance, as written to the audit log (besides `prev` and `hash`). */
export interface AuditRecord {
  time: string;
  serial: string;
  spiffeId: string;
  notAfter: string;
  keyType: string;
  requester: string;
}

/** Where audit records go. */
export interface AuditSink {
  /** Resolves once the record is durable; rejects (AUDIT_WRITE_FAILED) when it is not, and then nothing of it is in the log. */
  append(record: AuditRecord): Promise<void>;
  close(): void;
}

/** Collaborators of an {@link AuditLog}. */
export interface AuditLogDeps {
  /** Told after every write attempt: null on success, the error otherwise (storage health, metrics). */
  onWrite?(err: Error | null): void;
  /** Told when an incomplete last line (an interrupted write from a crashed process) was cut off. */
  onRepair?(removedBytes: number): void;
  /** How long to wait for another process's append (default 2 s). */
  lockWaitMs?: number;
}

const TAIL_BYTES = 64 * 1024;

interface Pending {
  fields: Readonly<Record<string, unknown>>;
  resolve(): void;
  reject(err: Error): void;
}

/** An append-only, hash-chained, fsynced JSON-lines log. */
export class AuditLog implements AuditSink {
  private queue: Pending[] = [];
  private scheduled = false;
  /** The file's size and chain head after our last write; re-read when the size differs (someone else wrote). */
  private known: { size: number; head: string } | null = null;
  private closed = false;

  constructor(
    /** The log file. */
    readonly path: string,
    private readonly deps: AuditLogDeps = {},
  ) {}

  /** Queues `record`; resolves once it is durable (written whole and fdatasynced). */
  append(record: AuditRecord | Readonly<Record<string, unknown>>): Promise<void> {
    if (this.closed) return Promise.reject(this.failure(new Error('the audit log is closed')));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ fields: record as Readonly<Record<string, unknown>>, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Appends `fields` now (after anything queued); throws AUDIT_WRITE_FAILED when it could not be made durable. */
  appendSync(fields: Readonly<Record<string, unknown>>): void {
    this.flush();
    this.write([fields]);
  }

  /** Writes what is queued, then refuses further appends. */
  close(): void {
    this.flush();
    this.closed = true;
  }

  /** Writes every queued record in one write and one fdatasync; settles their promises. */
  private flush(): void {
    this.scheduled = false;
    const batch = this.queue.splice(0);
    if (batch.length === 0) return;
    try {
      this.write(batch.map((p) => p.fields));
    } catch (err) {
      for (const p of batch) p.reject(err as Error);
      return;
    }
    for (const p of batch) p.resolve();
  }

  private write(records: ReadonlyArray<Readonly<Record<string, unknown>>>): void {
    try {
      withFileLockSync(`${this.path}.lock`, () => this.writeLocked(records), {
        waitMs: this.deps.lockWaitMs ?? 2000,
        busy: (owner) => new Error(`the audit log is locked by ${owner === null ? 'another process' : `pid ${owner}`}`),
      });
    } catch (err) {
      const e = this.failure(err as Error);
      this.deps.onWrite?.(e);
      throw e;
    }
    this.deps.onWrite?.(null);
  }

  private writeLocked(records: ReadonlyArray<Readonly<Record<string, unknown>>>): void {
    const fd = openSync(this.path, 'a+', 0o640);
    let size = -1;
    try {
      size = fstatSync(fd).size;
      const head = this.known && this.known.size === size ? this.known.head : this.readHead(fd, size);
      size = fstatSync(fd).size; // readHead may have cut a torn tail
      let prev = head;
      const lines: string[] = [];
      for (const r of records) {
        const c = chainRecord(r, prev);
        lines.push(c.line);
        prev = c.hash;
      }
      const buf = Buffer.from(lines.join('\n') + '\n', 'utf8');
      // writeSync may write less than asked on a nearly full disk: loop, and let ENOSPC throw.
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
      fdatasyncSync(fd);
      this.known = { size: size + buf.length, head: prev };
    } catch (err) {
      this.known = null;
      // Cut back whatever part of the batch reached the file: no torn record stays.
      if (size >= 0) {
        try {
          ftruncateSync(fd, size);
          fdatasyncSync(fd);
        } catch {
          // The next writer finds and cuts an incomplete last line (readHead).
        }
      }
      throw err;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The chain head of a file of `size` bytes: the last record's hash, or the
   * SHA-256 of the whole file when its last line is not chained (a log
   * written before chaining). An incomplete last line is cut off first.
   */
  private readHead(fd: number, size: number): string {
    if (size === 0) return createHash('sha256').digest('hex');
    let start = Math.max(0, size - TAIL_BYTES);
    let tail = readAt(fd, start, size - start);
    if (tail[tail.length - 1] !== 0x0a) {
      let nl = tail.lastIndexOf(0x0a);
      if (nl < 0 && start > 0) {
        start = 0;
        tail = readAt(fd, 0, size);
        nl = tail.lastIndexOf(0x0a);
      }
      const keep = nl < 0 ? 0 : start + nl + 1;
      ftruncateSync(fd, keep);
      fdatasyncSync(fd);
      this.deps.onRepair?.(size - keep);
      return this.readHead(fd, keep);
    }
    const prevNl = tail.lastIndexOf(0x0a, tail.length - 2);
    if (prevNl >= 0 || start === 0) {
      const hash = recordHash(tail.toString('utf8', prevNl + 1, tail.length - 1));
      if (hash !== null) return hash;
    }
    // Not chained (or a last line longer than the tail): the prefix anchor, hashed in chunks.
    const h = createHash('sha256');
    for (let off = 0; off < size; off += TAIL_BYTES) h.update(readAt(fd, off, Math.min(TAIL_BYTES, size - off)));
    return h.digest('hex');
  }

  private failure(err: Error): CaError {
    if (err instanceof CaError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    return new CaError(CaErrorCode.AUDIT_WRITE_FAILED, `${this.path}: the audit record could not be written (${code ?? err.message}); nothing was issued`, { file: this.path, reason: code ?? 'error' }, { cause: err });
  }
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** Opens the log at `path` (created 0640 on the first append). */
export function openAuditLog(path: string, deps: AuditLogDeps = {}): AuditLog {
  return new AuditLog(path, deps);
}
