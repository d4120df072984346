/**
 * A faster read path than the Readable stream machinery (push, buffering,
 * 'data' emission, a fresh 64 KiB allocation per read): Node's `onread`
 * reads into one shared buffer and calls us directly.
 *
 * Sockets the sidecar opens itself get it through the `onread` option of
 * net.connect / tls.connect. Sockets it is handed (accepted connections, and
 * the server-side TLSSocket wrapping one) are switched over by `adoptDirectRead`,
 * which sets the same fields Node's constructor would have set from that
 * option; on a runtime where those fields are not found it returns undefined
 * and the caller keeps the stream path.
 *
 * One buffer serves every socket in the process: libuv reads into it and
 * calls the callback synchronously, and the callback copies the bytes out
 * (small reads into Node's buffer pool, larger ones into a slab of this
 * socket's chunk lane) before returning, so no read can overwrite
 * another's data. Writes are given the copy; backpressure pauses the source
 * until the sink drains.
 */
import type { Duplex } from 'node:stream';
import { ChunkLane, SlabStore } from './chunk-pool';

const SHARED = Buffer.allocUnsafe(64 * 1024);
const STORE = new SlabStore();
/** Below this a chunk is copied the plain way (see chunk-pool.ts for why larger ones are not). */
const SMALL = 4096;

/** The `onread` option plus the handle to point it at its sink once known. */
export interface DirectRead {
  /** Pass as the `onread` option of net.connect / tls.connect. */
  readonly onread: { buffer: Buffer; callback: (nread: number, buf: Buffer) => boolean };
  /** Starts delivering to `sink` (bytes read before this are held and flushed first). */
  attach(source: Duplex, sink: Duplex): void;
}

/** Makes the `onread` plumbing for one socket. */
export function directRead(store: SlabStore = STORE): DirectRead {
  const lane = new ChunkLane(store);
  let sink: Duplex | undefined;
  let source: Duplex | undefined;
  let held: Array<{ chunk: Buffer; done: (() => void) | undefined }> | undefined;
  const resume = (): void => {
    source?.resume();
  };
  return {
    onread: {
      buffer: SHARED,
      callback(nread: number, buf: Buffer): boolean {
        let chunk: Buffer;
        let done: (() => void) | undefined;
        if (nread < SMALL) {
          // Node's own 8 KiB pool: no callback, and little external memory for small messages.
          chunk = Buffer.allocUnsafe(nread);
          buf.copy(chunk, 0, 0, nread);
        } else {
          const slab = lane.slabFor(nread);
          chunk = slab.copyIn(buf, nread);
          done = slab.done;
        }
        if (!sink) {
          (held ??= []).push({ chunk, done });
          return true;
        }
        if (sink.write(chunk, done)) return true;
        sink.once('drain', resume);
        return false;
      },
    },
    attach(src: Duplex, dst: Duplex): void {
      source = src;
      sink = dst;
      if (held) {
        for (const h of held) dst.write(h.chunk, h.done);
        held = undefined;
      }
    },
  };
}

/** The private fields of net.Socket that its constructor fills from the `onread` option. */
interface OnreadFields {
  kBuffer: symbol;
  kBufferCb: symbol;
}

let fields: OnreadFields | null | undefined;

function onreadFields(socket: object): OnreadFields | null {
  if (fields !== undefined) return fields;
  const syms = Object.getOwnPropertySymbols(socket);
  const kBuffer = syms.find((s) => s.description === 'kBuffer');
  const kBufferCb = syms.find((s) => s.description === 'kBufferCb');
  fields = kBuffer && kBufferCb ? { kBuffer, kBufferCb } : null;
  return fields;
}

type HandleWithUserBuffer = { useUserBuffer?: (buf: Buffer) => void };

/**
 * Switches an open, paused socket (a net.Socket or a TLSSocket) to the
 * `onread` path. Bytes already buffered in its Readable side are taken out
 * first and delivered ahead of anything read later. Returns undefined, and
 * leaves the socket untouched, when this runtime's sockets do not have the
 * fields it needs.
 */
export function adoptDirectRead(socket: Duplex, store: SlabStore = STORE): DirectRead | undefined {
  const f = onreadFields(socket);
  const handle = (socket as unknown as { _handle?: HandleWithUserBuffer | null })._handle;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (!f || !handle || typeof handle.useUserBuffer !== 'function' || !(f.kBuffer in socket) || slots[f.kBuffer]) return undefined;
  const direct = directRead(store);
  // Already-buffered bytes keep their order: they are held like bytes read before attach().
  for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) direct.onread.callback(c.length, c);
  slots[f.kBuffer] = direct.onread.buffer;
  slots[f.kBufferCb] = direct.onread.callback;
  handle.useUserBuffer(direct.onread.buffer);
  return direct;
}
