/**
 * Follows the CA's `audit.log` into the audit feed: every line any process
 * appends (an issuance, a revocation, a rotation step, from this control
 * plane, its lifecycle timer or a CLI on the CA dir) becomes an event within
 * one poll. At start it reads back the last `backlogBytes` so the feed opens
 * with recent history. A truncated or replaced file is read again from its
 * start; a partial last line waits for its newline; at most `maxReadBytes`
 * are read per poll. Never throws: a file that cannot be read is retried at
 * the next poll and reported once.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { Logger } from '@trellis/shared';
import { auditTrailEvent, type AuditFeed } from './audit-feed';

/** How the follower reads. */
export interface AuditTrailFollowerOptions {
  /** Poll interval. Default 250 ms. */
  intervalMs?: number;
  /** History read at start. Default 64 KiB. */
  backlogBytes?: number;
  /** Bytes read per poll at most. Default 1 MiB. */
  maxReadBytes?: number;
}

/** Tails one audit.log into a feed. */
export class AuditTrailFollower {
  private offset = -1;
  private ino = -1;
  private rest = '';
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(
    private readonly file: string,
    private readonly feed: AuditFeed,
    private readonly logger: Logger,
    private readonly opts: AuditTrailFollowerOptions = {},
  ) {}

  /** Reads the backlog, then polls until stop(). */
  start(): void {
    this.poll();
    this.timer = setInterval(() => this.poll(), this.opts.intervalMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Reads what was appended since the last poll into the feed. */
  poll(): void {
    let size: number;
    let ino: number;
    try {
      const st = statSync(this.file);
      size = st.size;
      ino = st.ino;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.failed(err);
      if (this.offset < 0) this.offset = 0;
      return;
    }
    let skipFirst = false;
    if (this.offset < 0) {
      // First look: start with the backlog, without the line it cuts into.
      const backlog = this.opts.backlogBytes ?? 64 * 1024;
      this.offset = Math.max(0, size - backlog);
      skipFirst = this.offset > 0;
      this.ino = ino;
    } else if (ino !== this.ino || size < this.offset) {
      this.offset = 0;
      this.rest = '';
      this.ino = ino;
    }
    if (size <= this.offset) return;
    const want = Math.min(size - this.offset, this.opts.maxReadBytes ?? 1024 * 1024);
    const buf = Buffer.alloc(want);
    let fd: number | undefined;
    try {
      fd = openSync(this.file, 'r');
      if (fstatSync(fd).ino !== this.ino) return; // replaced between the stat and the open: next poll
      const n = readSync(fd, buf, 0, want, this.offset);
      this.offset += n;
      this.failing = false;
      let text = this.rest + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      text = lines.pop() ?? '';
      this.rest = text.length > 64 * 1024 ? '' : text;
      if (skipFirst) lines.shift();
      for (const line of lines) {
        const e = line.trim() === '' ? null : auditTrailEvent(line);
        if (e) this.feed.record(e);
      }
    } catch (err) {
      this.failed(err);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private failed(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.logger.warn('the audit trail cannot be read for the event feed; retrying', { file: this.file, error: err });
  }
}
