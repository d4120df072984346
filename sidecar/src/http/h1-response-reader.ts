/**
 * Reads the HTTP/1.1 responses of one app connection with llhttp, the
 * parser the node binary carries and its own HTTP client runs on (reached
 * through `_http_common`, as node:http does). The inbound forwarder uses it
 * to read the app's answers on its own pooled connections: node:http's
 * client (ClientRequest, Agent, IncomingMessage) costs about as much per
 * request as everything else on the `/http` path together, while the
 * parsing itself is cheap.
 *
 * Framing is llhttp's, strict (no lenient flags): Content-Length, chunked
 * with trailers, a body ended by the connection's end, and the bodiless
 * answers (HEAD, 1xx, 204, 304). Informational answers (1xx other than
 * 101) are read and dropped, as Envoy does for an HTTP/1.1 client that did
 * not ask for them; a 101 is an error here, because no request read by this
 * reader offered an upgrade.
 */

import { HTTPParser, HEAD_NO_BODY, HEAD_READ_BODY } from './llhttp';

/** What a reader tells about the one response it is reading. */
export interface ResponseHandlers {
  /** The head of the final response. Returns true when the response has no body whatever its headers say (a HEAD request). */
  head(status: number, statusMessage: string, rawHeaders: string[], keepAlive: boolean): boolean;
  body(chunk: Buffer): void;
  /** The response is complete; `trailers` in raw `[name, value, ...]` form (empty without a chunked trailer section). */
  complete(trailers: string[]): void;
}

/** Why a response could not be read. */
export class ResponseReadError extends Error {
  readonly code = 'APP_RESPONSE_INVALID';
}

/** One connection's response reader: `expect` before each request is sent, `execute` every chunk the app sends. */
export class H1ResponseReader {
  private readonly parser = new HTTPParser();
  private handlers: ResponseHandlers | undefined;
  private headRequest = false;
  /** Header or trailer lines llhttp handed over before the section was complete (a head split across reads). */
  private pending: string[] = [];
  private informational = false;
  private closed = false;

  constructor(maxHeaderSize = 0) {
    const p = this.parser;
    p.initialize(HTTPParser.RESPONSE, {}, maxHeaderSize, HTTPParser.kLenientNone);
    p[HTTPParser.kOnHeaders] = (headers: string[]) => {
      for (const h of headers) this.pending.push(h);
    };
    p[HTTPParser.kOnHeadersComplete] = (_maj: number, _min: number, headers: string[] | undefined, _method: unknown, _url: unknown, status: number, statusMessage: string, _upgrade: boolean, keepAlive: boolean): number => {
      const raw = headers ?? this.pending;
      this.pending = [];
      if (status >= 100 && status < 200) {
        if (status === 101) throw new ResponseReadError('the app switched protocols on a request that offered no upgrade');
        this.informational = true;
        return HEAD_NO_BODY;
      }
      this.informational = false;
      const h = this.handlers;
      if (!h) throw new ResponseReadError('the app sent a response to no request');
      return h.head(status, statusMessage, raw, keepAlive) || this.headRequest ? HEAD_NO_BODY : HEAD_READ_BODY;
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      this.handlers?.body(chunk);
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      if (this.informational) {
        this.informational = false;
        this.pending = [];
        return;
      }
      const h = this.handlers;
      const trailers = this.pending;
      this.pending = [];
      this.handlers = undefined;
      h?.complete(trailers);
    };
    p[HTTPParser.kOnExecute] = null;
  }

  /** The next response read answers a request that `handlers` stand for; `headRequest` when it was a HEAD. */
  expect(handlers: ResponseHandlers, headRequest: boolean): void {
    this.handlers = handlers;
    this.headRequest = headRequest;
  }

  /** True while a response is expected and not complete. */
  get busy(): boolean {
    return this.handlers !== undefined;
  }

  /** Parses bytes the app sent; an error means the connection cannot be read further. */
  execute(chunk: Buffer): ResponseReadError | undefined {
    if (this.closed) return new ResponseReadError('the reader is closed');
    if (!this.handlers && !this.informational) return new ResponseReadError('the app sent bytes while no request was open');
    try {
      const r = this.parser.execute(chunk);
      return r instanceof Error ? new ResponseReadError(`the app sent an invalid response: ${(r as Error & { code?: string }).code ?? r.message}`) : undefined;
    } catch (err) {
      return err instanceof ResponseReadError ? err : new ResponseReadError(String(err));
    }
  }

  /** The app ended its side: completes a body that runs to the end, or says what was cut. */
  finish(): ResponseReadError | undefined {
    if (this.closed) return undefined;
    try {
      const r = this.parser.finish();
      if (r instanceof Error) return new ResponseReadError(`the app closed its connection mid-response: ${(r as Error & { code?: string }).code ?? r.message}`);
    } catch (err) {
      return err instanceof ResponseReadError ? err : new ResponseReadError(String(err));
    }
    return this.handlers ? new ResponseReadError('the app closed its connection before it answered') : undefined;
  }

  /** Frees the parser; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers = undefined;
    this.parser.remove();
    this.parser.free();
  }
}
