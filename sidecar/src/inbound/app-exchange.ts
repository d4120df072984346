/**
 * One request and its answer between an `/http` inbound port and an
 * HTTP/1.1 app, over a pooled connection (app-connection-pool.ts). The
 * client side may be HTTP/1.1 or HTTP/2: it gives the request as a head
 * already written and a body stream, and takes the answer through a sink.
 *
 * The body goes as it comes: with the length the head announced, or
 * chunked again. A body whose stream ended because it was cut (an HTTP/2
 * session destroyed ends its streams' readable side as if they were
 * complete; only `destroyed` tells) is never finished towards the app: the
 * connection is closed instead, so the app sees a cut request, not a whole
 * one.
 */
import type { AppConnectionPool } from './app-connection-pool';

/**
 * A request body as the exchange reads it: a Readable (an HTTP/1.1
 * IncomingMessage, an HTTP/2 stream) or the inbound's own llhttp body
 * (h1-connection.ts). `aborted`: the client went away before its end.
 */
export interface BodySource {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  once(event: 'end' | 'aborted', listener: () => void): unknown;
  pause(): unknown;
  resume(): unknown;
  readonly destroyed: boolean;
}

/** What the app is sent. */
export interface AppRequest {
  /** The request line and headers, ending with the empty line (see requestHead). */
  readonly head: string;
  readonly method: string;
  /** `none`: no body follows; `length`: the body as read (the head carries its Content-Length); `chunked`: chunked again. */
  readonly body: 'none' | 'length' | 'chunked';
  /** The client's body, paused or flowing; read to its end even when the app answered first. */
  readonly source: BodySource;
}

/** Where the app's answer goes. */
export interface AnswerSink {
  /** The head of the app's final answer. May throw (a header the client side refuses): the exchange then fails. */
  head(status: number, statusMessage: string, rawHeaders: string[]): void;
  /** A piece of the body; false when the client side asks to wait for `onDrain`. */
  write(chunk: Buffer): boolean;
  onDrain(resume: () => void): void;
  /** The answer is complete; `trailers` raw, empty when the app sent none. */
  end(trailers: string[]): void;
  /** The app failed: a 502 (counted) before the head, a cut answer after it. */
  failed(): void;
}

/**
 * Starts the exchange; returns what to call when the client went away: the
 * app connection is closed, not reused, unless the exchange was over
 * already (then it does nothing, so it may be called on any close).
 */
export function exchangeWithApp(pool: AppConnectionPool, req: AppRequest, sink: AnswerSink): () => void {
  const conn = pool.take();
  const app = conn.socket;
  const source = req.source;
  let requestDone = false;
  let keepAlive = false;
  let over = false;
  /** The exchange is over for this request: the connection goes back to the pool only if both sides finished cleanly. */
  const finish = (reusable: boolean): void => {
    if (over) return;
    over = true;
    pool.give(conn, reusable);
    // A body still coming is read and dropped: paused for an app that no longer reads it, it would hold
    // the client's request (an HTTP/2 stream's window) open for good.
    if (!requestDone) source.resume();
  };
  const resumeApp = (): void => {
    app.resume();
  };
  conn.begin(
    {
      head(status, statusMessage, rawHeaders, appKeepsAlive) {
        keepAlive = appKeepsAlive;
        sink.head(status, statusMessage, rawHeaders);
        return false;
      },
      body(chunk) {
        if (!sink.write(chunk)) {
          app.pause();
          sink.onDrain(resumeApp);
        }
      },
      complete(trailers) {
        sink.end(trailers);
        // An app that answered before the whole request body arrived has the rest still to read: not reused.
        finish(requestDone && keepAlive);
      },
      failed() {
        if (over) return;
        finish(false);
        sink.failed();
      },
      drain() {
        source.resume();
      },
    },
    req.method === 'HEAD',
  );
  app.write(req.head, 'latin1');
  source.on('data', (chunk: Buffer) => {
    // Once the answer is complete the rest of the body is read and dropped (the client's connection stays usable).
    if (over || chunk.length === 0 || req.body === 'none') return;
    const ok = req.body === 'chunked' ? writeChunk(app, chunk) : app.write(chunk);
    if (!ok) source.pause();
  });
  // A client that aborted its request (an HTTP/2 reset, a lost HTTP/1.1 connection) never finishes its body.
  source.once('aborted', () => finish(false));
  source.once('end', () => {
    if (over) return;
    if (source.destroyed) return finish(false);
    requestDone = true;
    if (req.body === 'chunked') app.write(LAST_CHUNK);
  });
  return () => finish(false);
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** Writes `chunk` as one chunk of a chunked body; false when the socket asks to wait. */
function writeChunk(app: NodeJS.WritableStream, chunk: Buffer): boolean {
  app.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
  app.write(chunk);
  return app.write('\r\n', 'latin1');
}
