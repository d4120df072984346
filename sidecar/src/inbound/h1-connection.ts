/**
 * The HTTP/1.1 requests of one connection on an `/http` inbound port, read
 * with llhttp (the parser node:http runs on, strict) and answered by writing
 * the response bytes ourselves, to an app that speaks HTTP/1.1. node:http's
 * server builds an IncomingMessage and a ServerResponse with their streams
 * and events for every request; measured on this machine, a TLS server
 * answering small requests cost 26-27 µs of CPU per request on node:http
 * against 18-20 µs reading them with llhttp directly.
 *
 * Every request goes through the same gate (request-gate.ts) and the same
 * pooled exchange with the app (app-exchange.ts) as on node:http's server.
 * Only the common case is served here. At the first request that is not
 * (not HTTP/1.1, an Upgrade or CONNECT, `Expect`, no `Host`, a request sent
 * before the answer to the one before it, or an app not known to speak
 * HTTP/1.1 at that moment), the connection is handed to node:http's server
 * (http-inbound.ts): that request's head, written again from what llhttp
 * read, and the bytes after it are put back in front of the socket, and the
 * connection stays there. The framing is llhttp's on both sides; a request
 * it cannot read is answered 400 (431 for a head too large) and the
 * connection closed, as node:http's server does.
 *
 * Responses: the app's status and headers (less its connection management),
 * its `Content-Length` kept, any other body chunked (trailers for a client
 * that sent `TE: trailers`), `Date` added when the app sent none, and
 * `Connection: close` when the client asked for it, the port is draining or
 * the request was refused with a 400. Timeouts are node:http's defaults: a
 * head must arrive within 60 s of its first byte, a whole request within
 * 300 s (408 otherwise), and a keep-alive connection idle for 60 s is closed.
 */
import { EventEmitter } from 'node:events';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { HEAD_READ_BODY, HEAD_STOP, HTTP_METHODS, HTTPParser, type LlhttpParser } from '../http/llhttp';
import type { AnswerSink, BodySource } from './app-exchange';
import { downstreamHeaders, downstreamTrailers, takesTrailers } from './http-forwarder';
import type { Gate, GateRefusal } from './request-gate';

/** One request as read off the connection. */
export interface H1Request {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  /** The first `Host` header's value. */
  readonly host: string;
}

/** What a connection needs from its port. */
export interface H1ConnectionDeps {
  /** True when a request may be served here now (the app is known to speak HTTP/1.1). */
  servable(): boolean;
  /** The gate (request-gate.ts) for a request of this connection. */
  gate(req: H1Request): Gate;
  /**
   * Starts the exchange of an allowed request with the app; returns what to
   * call if the client goes away, or undefined when the request cannot be
   * sent as one head (answered 400 here).
   */
  forward(req: H1Request, allowed: Extract<Gate, { ok: true }>, body: BodySource, sink: AnswerSink): (() => void) | undefined;
  /** The app failed before it answered (the 502 is written here). */
  upstreamFailed(): void;
  /** A request llhttp could not read, or one that timed out: counted and logged by the port. */
  clientError(status: number, code: string): void;
  /** node:http's server takes the connection, `bytes` first. */
  handOver(bytes: Buffer): void;
  /** The connection is idle while the port drains: close it once quiet. */
  idleWhileDraining(): void;
  draining(): boolean;
}

/** node:http's defaults (`headersTimeout`, `requestTimeout`), and the port's keep-alive timeout. */
export const HEADERS_TIMEOUT_MS = 60_000;
export const REQUEST_TIMEOUT_MS = 300_000;
export const KEEP_ALIVE_TIMEOUT_MS = 60_000;
const KEEP_ALIVE_HEADER = `Connection: keep-alive\r\nKeep-Alive: timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}\r\n`;

/** A value that would not stay one header line (the app's were read by llhttp; checked so that a bad one never splits a response). */
const UNSENDABLE_VALUE = /[^\t\u0020-\u007e\u0080-\u00ff]/;
const LAST_CHUNK = '0\r\n';

/** The request body as the exchange reads it; pausing it stops reading the connection. */
class H1Body extends EventEmitter implements BodySource {
  destroyed = false;
  constructor(private readonly conn: Socket) {
    super();
  }
  pause(): this {
    this.conn.pause();
    return this;
  }
  resume(): this {
    this.conn.resume();
    return this;
  }
}

/** One request of the connection and the state of its answer. */
interface Exchange {
  readonly method: string;
  readonly body: H1Body;
  readonly trailers: boolean;
  requestDone: boolean;
  headWritten: boolean;
  answered: boolean;
  chunked: boolean;
  bodiless: boolean;
  close: boolean;
  drop: (() => void) | undefined;
}

type Phase = 'idle' | 'head' | 'body' | 'waiting';

/** Serves one connection until it closes or is handed to node:http's server. */
export class H1Connection {
  private readonly parser: LlhttpParser = new HTTPParser();
  private cur: Exchange | undefined;
  private phase: Phase = 'idle';
  private phaseSince = Date.now();
  private messageSince = 0;
  private pendingHeaders: string[] = [];
  private pendingUrl = '';
  /** Set when the head just read goes to node:http's server (the bytes it is given first). */
  private handOverHead: string | undefined;
  /** The bytes for node:http's server, waiting for the answer in flight. */
  private handOverBytes: Buffer | undefined;
  private stopped = false;
  /** True while llhttp runs (the parser may not be freed from inside its own callbacks). */
  private executing = false;
  private freeAfterExecute = false;
  private corked = false;
  private readonly onData = (chunk: Buffer): void => this.read(chunk);
  private readonly onEnd = (): void => this.clientEnded();
  private readonly onClose = (): void => this.closed();
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.conn.uncork();
  };

  constructor(
    private readonly conn: Socket,
    private readonly deps: H1ConnectionDeps,
    private readonly sweeper: H1Sweeper,
  ) {
    const p = this.parser;
    p.initialize(HTTPParser.REQUEST, {}, 0, HTTPParser.kLenientNone);
    p[HTTPParser.kOnMessageBegin] = () => {
      this.messageSince = Date.now();
      this.setPhase('head');
    };
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      for (const h of headers) this.pendingHeaders.push(h);
      this.pendingUrl += url;
    };
    p[HTTPParser.kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _s: unknown, _m: unknown, upgrade: boolean, keepAlive: boolean): number =>
      this.onHead(major, minor, headers ?? this.pendingHeaders, HTTP_METHODS[method] ?? '', url || this.pendingUrl, upgrade, keepAlive);
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      if (!this.stopped) this.cur?.body.emit('data', chunk);
    };
    p[HTTPParser.kOnMessageComplete] = () => this.onMessageComplete();
    p[HTTPParser.kOnExecute] = null;
    conn.on('data', this.onData);
    conn.on('end', this.onEnd);
    conn.on('close', this.onClose);
    sweeper.add(this);
  }

  /** The port drains: a response not yet started says `Connection: close`; an idle connection closes once quiet. */
  drain(): void {
    if (this.stopped) return;
    const ex = this.cur;
    if (ex && !ex.headWritten) ex.close = true;
    if (this.phase === 'idle') this.deps.idleWhileDraining();
  }

  /** Closes the connection when it has been in its phase too long (called by the sweeper). */
  checkTimeouts(now: number, limits: H1Timeouts): void {
    if (this.stopped) return;
    if (this.phase === 'idle' && now - this.phaseSince >= limits.keepAliveMs) {
      this.conn.destroy();
    } else if ((this.phase === 'head' && now - this.messageSince >= limits.headersMs) || (this.phase === 'body' && now - this.messageSince >= limits.requestMs)) {
      this.refuseConnection(408, 'ERR_HTTP_REQUEST_TIMEOUT');
    }
  }

  private setPhase(p: Phase): void {
    this.phase = p;
    if (p === 'idle') this.phaseSince = Date.now();
  }

  private read(chunk: Buffer): void {
    if (this.stopped) return;
    let r: number | Error;
    this.executing = true;
    try {
      r = this.parser.execute(chunk);
    } catch {
      // A callback of ours threw: nothing about this connection can be trusted further.
      r = new Error('callback failed');
      this.stop();
      this.conn.destroy();
    } finally {
      this.executing = false;
      if (this.freeAfterExecute) this.freeParser();
    }
    if (this.handOverHead !== undefined) {
      const rest = typeof r === 'number' ? chunk.subarray(r) : Buffer.alloc(0);
      const bytes = Buffer.concat([Buffer.from(this.handOverHead, 'latin1'), rest]);
      this.handOverHead = undefined;
      this.stop();
      this.handOverBytes = bytes;
      if (!this.cur || this.cur.answered) this.handOver();
      return;
    }
    if (r instanceof Error && !this.stopped) this.refuseConnection((r as Error & { code?: string }).code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, (r as Error & { code?: string }).code ?? 'malformed HTTP');
  }

  private onHead(major: number, minor: number, rawHeaders: string[], method: string, url: string, upgrade: boolean, keepAlive: boolean): number {
    this.pendingHeaders = [];
    this.pendingUrl = '';
    // Closing after a refusal, or timed out: nothing more is read.
    if (this.stopped) return HEAD_STOP;
    const host = firstValue(rawHeaders, 'host');
    const inFlight = this.cur !== undefined && !this.cur.answered;
    if (major !== 1 || minor !== 1 || upgrade || method === 'CONNECT' || host === undefined || inFlight || firstValue(rawHeaders, 'expect') !== undefined || !this.deps.servable()) {
      this.handOverHead = rebuildHead(method, url, major, minor, rawHeaders);
      return HEAD_STOP;
    }
    const ex: Exchange = {
      method,
      body: new H1Body(this.conn),
      trailers: takesTrailers(rawHeaders),
      requestDone: false,
      headWritten: false,
      answered: false,
      chunked: false,
      bodiless: false,
      close: !keepAlive || this.deps.draining(),
      drop: undefined,
    };
    this.cur = ex;
    this.setPhase('body');
    const req: H1Request = { method, url, rawHeaders, host };
    const g = this.deps.gate(req);
    if (!g.ok) {
      this.refuse(ex, g);
      return HEAD_READ_BODY;
    }
    ex.drop = this.deps.forward(req, g, ex.body, this.sink(ex));
    // Not reached through llhttp, which refuses such bytes; checked because a bad line would split the request.
    if (ex.drop === undefined) this.refuse(ex, { ok: false, status: 400, body: 'bad request\n', close: false, denied: false });
    return HEAD_READ_BODY;
  }

  private onMessageComplete(): void {
    const ex = this.cur;
    // The head handed over to node:http's server counts as a message for llhttp; it is not ours.
    if (this.handOverHead !== undefined || this.stopped || !ex || ex.requestDone) return;
    ex.requestDone = true;
    ex.body.emit('end');
    this.setPhase(ex.answered ? 'idle' : 'waiting');
    if (ex.answered) this.afterAnswer(ex);
  }

  /** Where the app's answer to `ex` goes. */
  private sink(ex: Exchange): AnswerSink {
    const conn = this.conn;
    return {
      head: (status, statusMessage, rawHeaders) => {
        if (this.deps.draining()) ex.close = true;
        ex.bodiless = ex.method === 'HEAD' || status === 204 || status === 304;
        const head = this.responseHead(ex, status, statusMessage, downstreamHeaders(rawHeaders));
        this.cork();
        conn.write(head, 'latin1');
        ex.headWritten = true;
      },
      write: (chunk) => {
        if (ex.bodiless || chunk.length === 0) return true;
        if (!ex.chunked) return conn.write(chunk) || conn.destroyed;
        this.cork();
        conn.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
        conn.write(chunk);
        return conn.write('\r\n', 'latin1') || conn.destroyed;
      },
      onDrain: (resume) => void conn.once('drain', resume),
      end: (rawTrailers) => {
        if (ex.chunked && !ex.bodiless) conn.write(LAST_CHUNK + (ex.trailers ? trailerLines(rawTrailers) : '') + '\r\n', 'latin1');
        this.answered(ex);
      },
      failed: () => {
        if (ex.headWritten) {
          conn.destroy();
          return;
        }
        this.deps.upstreamFailed();
        const body = 'upstream connect error\n';
        conn.write(plainResponse(502, body, ex.close), 'latin1');
        this.answered(ex);
      },
    };
  }

  /** The status line and headers of the app's answer to `ex`, with our framing and connection management. */
  private responseHead(ex: Exchange, status: number, statusMessage: string, headers: string[]): string {
    let head = `HTTP/1.1 ${status} ${statusMessage || STATUS_CODES[status] || 'unknown'}\r\n`;
    let length = false;
    let coded = false;
    let date = false;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const name = headers[i]!;
      const value = headers[i + 1]!;
      if (UNSENDABLE_VALUE.test(value)) throw new Error(`the app's ${name} header cannot be sent`);
      const n = name.length;
      if (n === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (n === 17 && name.toLowerCase() === 'transfer-encoding') coded = true;
      else if (n === 4 && name.toLowerCase() === 'date') date = true;
      head += `${name}: ${value}\r\n`;
    }
    if (!ex.bodiless) {
      // A body the app framed by closing its connection (or chunked) goes chunked: ours stays open.
      ex.chunked = coded || !length;
      if (!coded && !length) head += 'Transfer-Encoding: chunked\r\n';
    }
    if (!date) head += `Date: ${httpDate()}\r\n`;
    return head + (ex.close ? 'Connection: close\r\n\r\n' : `${KEEP_ALIVE_HEADER}\r\n`);
  }

  /** Answers `ex` with a refusal of the gate. */
  private refuse(ex: Exchange, g: GateRefusal): void {
    if (g.close) ex.close = true;
    ex.headWritten = true;
    this.conn.write(plainResponse(g.status, g.body, ex.close), 'latin1');
    this.answered(ex);
  }

  private answered(ex: Exchange): void {
    ex.answered = true;
    this.uncork();
    if (ex.close) {
      // Nothing after this answer is read: the framing may be in doubt, or the client asked to close.
      this.stop();
      this.conn.end();
      this.conn.once('finish', () => this.conn.destroy());
      return;
    }
    if (ex.requestDone) {
      this.setPhase('idle');
      this.afterAnswer(ex);
    }
  }

  /** `ex` is over on both sides: hand the connection over if a request waits for node:http's server. */
  private afterAnswer(ex: Exchange): void {
    if (this.cur === ex) this.cur = undefined;
    if (this.handOverBytes) return this.handOver();
    // The exchange may have paused the body for an app that stopped reading, and finished (the app
    // answered) before that app read again: the connection is read again for the next request.
    if (!this.stopped) this.conn.resume();
    if (this.deps.draining()) this.deps.idleWhileDraining();
  }

  private handOver(): void {
    const bytes = this.handOverBytes!;
    this.handOverBytes = undefined;
    this.conn.off('close', this.onClose);
    this.deps.handOver(bytes);
  }

  /**
   * A request that cannot be read or timed out: a byte-correct answer and
   * the connection closed (a request already passed to the app is dropped
   * there), or the connection dropped if an answer has started.
   */
  private refuseConnection(status: number, code: string): void {
    const ex = this.cur;
    this.stop();
    if (ex?.headWritten || !this.conn.writable) {
      this.conn.destroy();
      return;
    }
    ex?.drop?.();
    this.deps.clientError(status, code);
    this.conn.end(plainResponse(status, `${STATUS_CODES[status]!.toLowerCase()}: ${code}\n`, true), 'latin1');
    this.conn.once('finish', () => this.conn.destroy());
  }

  /** The client half-closed: an answer under way is still written (then the connection ends); a cut request is dropped. */
  private clientEnded(): void {
    if (this.stopped) return;
    const err = this.parser.finish();
    const ex = this.cur;
    if (err instanceof Error || (ex && !ex.requestDone)) {
      this.conn.destroy();
      return;
    }
    if (ex && !ex.answered) {
      ex.close = true;
      return;
    }
    this.stop();
    this.conn.end();
  }

  private closed(): void {
    const ex = this.cur;
    if (ex && !ex.requestDone) {
      ex.body.destroyed = true;
      ex.body.emit('aborted');
    }
    if (ex && !ex.answered) ex.drop?.();
    this.stop();
  }

  /** Stops reading and frees the parser; the socket is left to its owner. */
  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.sweeper.delete(this);
    this.conn.off('data', this.onData);
    this.conn.off('end', this.onEnd);
    this.conn.pause();
    // The exchange in flight still needs to hear of the connection's close.
    if (!this.cur || this.cur.answered) this.conn.off('close', this.onClose);
    if (this.executing) this.freeAfterExecute = true;
    else this.freeParser();
  }

  /** True while a request is under way on either side. */
  get busy(): boolean {
    return this.cur !== undefined;
  }

  private freeParser(): void {
    this.freeAfterExecute = false;
    this.parser.remove();
    this.parser.free();
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.conn.cork();
    process.nextTick(this.uncork);
  }
}

/** How long a connection may stay in each phase (node:http's defaults unless a test says otherwise). */
export interface H1Timeouts {
  /** From a request's first byte to the end of its head: 408 after. */
  readonly headersMs: number;
  /** From a request's first byte to its end: 408 after (the connection is dropped if an answer is under way). */
  readonly requestMs: number;
  /** With no request under way: the connection is closed after. */
  readonly keepAliveMs: number;
  /** How often the timeouts are checked. */
  readonly checkEveryMs: number;
}

export const DEFAULT_H1_TIMEOUTS: H1Timeouts = Object.freeze({ headersMs: HEADERS_TIMEOUT_MS, requestMs: REQUEST_TIMEOUT_MS, keepAliveMs: KEEP_ALIVE_TIMEOUT_MS, checkEveryMs: 1000 });

/**
 * Checks the timeouts of every connection of a port once a second (one
 * timer for all of them, instead of timers set and cleared per request).
 */
export class H1Sweeper {
  private readonly conns = new Set<H1Connection>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly limits: H1Timeouts = DEFAULT_H1_TIMEOUTS) {}

  add(c: H1Connection): void {
    this.conns.add(c);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), this.limits.checkEveryMs);
      this.timer.unref();
    }
  }

  delete(c: H1Connection): void {
    this.conns.delete(c);
    if (this.conns.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const c of [...this.conns]) c.checkTimeouts(now, this.limits);
  }
}

/** The first value of header `lower` (lower case) in `raw`, or undefined. Pure. */
function firstValue(raw: readonly string[], lower: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === lower.length && name.toLowerCase() === lower) return raw[i + 1];
  }
  return undefined;
}

/** A request head as llhttp read it, written again (latin1) for node:http's server. Pure. */
export function rebuildHead(method: string, url: string, major: number, minor: number, raw: readonly string[]): string {
  let head = `${method} ${url} HTTP/${major}.${minor}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]!}: ${raw[i + 1]!}\r\n`;
  return `${head}\r\n`;
}

/** A whole plain-text response. Pure but for the date. */
function plainResponse(status: number, body: string, close: boolean): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nDate: ${httpDate()}\r\n${close ? 'Connection: close\r\n' : KEEP_ALIVE_HEADER}\r\n${body}`;
}

/** The trailer lines of a chunked answer (RFC 9112 §7.1.2), without the fields a trailer may not carry or values that are not one line. Pure. */
function trailerLines(raw: readonly string[]): string {
  let out = '';
  for (const [name, value] of downstreamTrailers(raw)) if (!UNSENDABLE_VALUE.test(value)) out += `${name}: ${value}\r\n`;
  return out;
}

let dateSecond = -1;
let dateText = '';

/** The `Date` header's value, computed once a second as node:http does. */
function httpDate(): string {
  const now = Date.now();
  const s = Math.floor(now / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
