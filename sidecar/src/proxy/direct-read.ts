/**
 * A faster read path for sockets the sidecar opens itself (the app
 * connection inbound, the mTLS connection outbound): Node's `onread` option
 * reads into one shared buffer and calls us directly, skipping the Readable
 * stream machinery (push, buffering, 'data' emission) on every chunk.
 *
 * One buffer serves every socket in the process: libuv reads into it and
 * calls the callback synchronously, and the callback copies the bytes out
 * before returning, so no read can overwrite another's data. Writes are
 * given the copy; backpressure pauses the source until the sink drains.
 */
import type { Duplex } from 'node:stream';

const SHARED = Buffer.allocUnsafe(64 * 1024);

/** The `onread` option plus the handle to point it at its sink once known. */
export interface DirectRead {
  /** Pass as the `onread` option of net.connect / tls.connect. */
  readonly onread: { buffer: Buffer; callback: (nread: number, buf: Buffer) => boolean };
  /** Starts delivering to `sink` (bytes read before this are held and flushed first). */
  attach(source: Duplex, sink: Duplex): void;
}

/** Makes the `onread` plumbing for one socket. */
export function directRead(): DirectRead {
  let sink: Duplex | undefined;
  let source: Duplex | undefined;
  let held: Buffer[] | undefined;
  const resume = (): void => {
    source?.resume();
  };
  return {
    onread: {
      buffer: SHARED,
      callback(nread: number, buf: Buffer): boolean {
        const copy = Buffer.allocUnsafe(nread);
        buf.copy(copy, 0, 0, nread);
        if (!sink) {
          (held ??= []).push(copy);
          return true;
        }
        if (sink.write(copy)) return true;
        sink.once('drain', resume);
        return false;
      },
    },
    attach(src: Duplex, dst: Duplex): void {
      source = src;
      sink = dst;
      if (held) {
        for (const b of held) dst.write(b);
        held = undefined;
      }
    },
  };
}
