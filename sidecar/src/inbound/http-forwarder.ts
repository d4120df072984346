/**
 * Forwards one HTTP request from a `/http` inbound port to the application
 * over a keep-alive connection pool, replacing `x-forwarded-client-cert`
 * with the one we vouch for: a client can never forge its identity header.
 * The request-target sent is the one policy judged (normalized, origin-form;
 * see request-target.ts), never the client's raw one.
 *
 * Headers travel as raw name/value lists both ways (no header objects built
 * and re-serialised), and bodies are forwarded with two listeners per
 * direction instead of pipe(): on this path per-request overhead is the cost.
 */
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { AppConnectionPool } from './app-connection-pool';
import { exchangeWithApp, type AnswerSink, type BodySource } from './app-exchange';

/** What is sent to the app for one request, besides the client's end-to-end headers and body. */
export interface Forward {
  /** The origin-form request-target the app receives: the normalized path, then the query as sent. */
  readonly target: string;
  /** The XFCC we vouch for (mTLS peers), or undefined (plaintext): a client-sent one never passes. */
  readonly xfcc: string | undefined;
  /** `Host` to send when the client sent none (absolute-form target); default `appHost:appPort`. */
  readonly host?: string;
  /**
   * An Upgrade to offer the app (the client's `websocket` token). Only a
   * `101` answer calls `onSwitch` with the app's connection, to be joined to
   * the client's as raw bytes; any other answer is an ordinary response on
   * `res`, as Envoy does.
   */
  readonly upgrade?: { readonly protocol: string; onSwitch(upRes: IncomingMessage, appSocket: Socket, appHead: Buffer): void };
}

/** Forwards `req` to the app and streams the answer back on `res`. */
export type HttpForwarder = (req: IncomingMessage, res: ServerResponse, fwd: Forward, onUpstreamError: () => void) => void;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-forwarded-client-cert']);
const RESPONSE_DROPPED = new Set(['connection', 'keep-alive']);
/** Headers that must appear at most once: a second copy lets policy and app see different values. */
const SINGLE = ['host', 'transfer-encoding', 'content-length'] as const;

/**
 * Why a request's headers are ambiguous, or undefined when they are not.
 * Authorization reads one value (Node keeps the first `Host`), an app or
 * framework may read another (the last, or all joined), so a repeated
 * `Host` would let a request pass policy for one host and be routed to
 * another; repeated framing headers invite request smuggling. Such requests
 * are refused with 400 before authorization. Pure.
 */
export function ambiguousRequestHeaders(rawHeaders: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (!(SINGLE as readonly string[]).includes(lower)) continue;
    if (seen.has(lower)) return `more than one ${lower} header`;
    seen.add(lower);
  }
  if (seen.has('transfer-encoding') && seen.has('content-length')) return 'both transfer-encoding and content-length';
  return undefined;
}

/** The header names a `Connection` header lists (hop-by-hop for this hop only, RFC 9110 7.6.1), lower case. */
function connectionListed(rawHeaders: readonly string[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'connection') continue;
    for (const token of rawHeaders[i + 1]!.split(',')) {
      const t = token.trim().toLowerCase();
      if (t !== '') (out ??= new Set()).add(t);
    }
  }
  return out;
}

/**
 * The header list sent to the app, in `rawHeaders` form: hop-by-hop headers
 * (the fixed set and any the client's `Connection` header names) and every
 * client-sent XFCC (any letter case) removed, ours added; `host` (when given)
 * is added if the client sent none; with `upgrade`, `upgrade: <it>` and
 * `connection: upgrade` are added back. `te` goes as `te: trailers` when the
 * client listed `trailers`, with the `te` connection option RFC 9110 §10.1.4
 * asks for, and is dropped otherwise (Envoy's TE sanitizing): the sidecar
 * passes the app's trailers on to such a client, so the app may send them. Pure.
 */
export function upstreamHeaders(rawHeaders: readonly string[], xfcc: string | undefined, host?: string, upgrade?: string): string[] {
  const out: string[] = [];
  const listed = connectionListed(rawHeaders);
  let sawHost = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (listed?.has(lower) && lower !== 'x-forwarded-client-cert' && lower !== 'host')) {
      continue;
    }
    if (lower === 'host') sawHost = true;
    out.push(name, rawHeaders[i + 1]!);
  }
  if (!sawHost && host !== undefined) out.push('host', host);
  if (xfcc !== undefined) out.push('x-forwarded-client-cert', xfcc);
  const trailers = takesTrailers(rawHeaders);
  if (trailers) out.push('te', 'trailers');
  if (upgrade !== undefined) out.push('upgrade', upgrade);
  if (upgrade !== undefined || trailers) out.push('connection', upgrade !== undefined && trailers ? 'upgrade, te' : upgrade !== undefined ? 'upgrade' : 'te');
  return out;
}

/** True when the request says it takes trailers (`te` lists `trailers`, RFC 9110 §10.1.4); `raw` from either protocol. Pure. */
export function takesTrailers(raw: readonly string[]): boolean {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'te' && raw[i + 1]!.split(',').some((t) => t.trim().toLowerCase() === 'trailers')) return true;
  }
  return false;
}

/**
 * Fields a trailer section may not carry on to an HTTP/1.1 client (RFC 9110
 * §6.5.1: framing, routing and connection control belong in the header
 * section), besides pseudo-headers.
 */
const TRAILER_DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'host']);

/**
 * The app's trailers (HTTP/2 trailers or HTTP/1.1 chunked trailers, raw
 * `[name, value, ...]`) as the `[name, value]` pairs of an HTTP/1.1 chunked
 * trailer section (RFC 9112 §7.1.2), without pseudo-headers and the fields
 * a trailer may not carry. Pure.
 */
export function downstreamTrailers(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.startsWith(':') || TRAILER_DROPPED.has(name.toLowerCase())) continue;
    out.push([name, raw[i + 1]!]);
  }
  return out;
}

/**
 * Writes the app's trailers `raw` on an HTTP/1.1 response, before it ends.
 * Node sends them only when the response is chunked (the app gave no
 * `Content-Length`), as Envoy's HTTP/1 codec does; with a length they are
 * dropped, which RFC 9110 §6.5.1 allows a recipient.
 */
export function passTrailers(res: ServerResponse, raw: readonly string[]): void {
  const t = downstreamTrailers(raw);
  if (t.length === 0 || res.writableEnded) return;
  try {
    res.addTrailers(t);
  } catch {
    // A field Node refuses to write (its own checks are stricter than the parser's) is dropped, not sent broken.
  }
}

/** The app's response headers passed to the client, in `rawHeaders` form, without its connection management. Pure. */
export function downstreamHeaders(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  const listed = connectionListed(rawHeaders);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (RESPONSE_DROPPED.has(lower) || listed?.has(lower)) continue;
    out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return out;
}

/**
 * Copies a body from `src` to `dst` with backpressure; ends `dst` when `src`
 * ends. With `stopWhenSinkCloses` (the response direction), a `dst` that
 * closes before it finished (the client went away) destroys `src` instead of
 * leaving it paused or read to its end: a streaming response whose client
 * left must not keep the app connection busy forever. The request direction
 * keeps reading and dropping, so an app that answers early (413) and closes
 * does not cut the client's connection before it reads that answer.
 *
 * `onCut` is for HTTP/2 sources: node:http2 ends the readable side of every
 * open stream of a session that is destroyed (its connection died, or was
 * closed for a revocation) with an ordinary 'end', as if its sender had sent
 * END_STREAM; only the stream being destroyed already tells the two apart.
 * Such an end calls `onCut` (which resets the other hop) instead of ending
 * `dst`, so a cut body is never passed on as a whole one.
 */
export function forwardBody(src: Readable, dst: Writable, stopWhenSinkCloses = false, onCut?: () => void): void {
  const resume = (): void => {
    src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    if (!dst.write(chunk) && !dst.destroyed) {
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.once('end', () => {
    if (onCut && src.destroyed) onCut();
    else dst.end();
  });
  if (stopWhenSinkCloses) {
    dst.once('close', () => {
      if (!dst.writableFinished && !src.readableEnded) src.destroy();
    });
  }
}

/** A request-target or header value Node's client would refuse to send: CR, LF, NUL and other controls, or a space in the target. */
const UNSENDABLE_TARGET = /[^\u0021-\u00ff]/;
const UNSENDABLE_VALUE = /[^\t\u0020-\u007e\u0080-\u00ff]/;

/**
 * The request head sent to the app (latin1, as node:http writes it), or
 * undefined when a part of it could not be sent as one line: the target
 * and our own values are checked, the client's were checked by the parser
 * that read them. Pure.
 */
export function requestHead(method: string, target: string, rawHeaders: readonly string[]): string | undefined {
  if (UNSENDABLE_TARGET.test(target)) return undefined;
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const value = rawHeaders[i + 1]!;
    if (UNSENDABLE_VALUE.test(value)) return undefined;
    head += `${rawHeaders[i]!}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

/** True when the request's body is chunked (llhttp admits a request Transfer-Encoding only when it ends in chunked). Pure. */
function chunkedBody(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === 'transfer-encoding') return true;
  return false;
}

/**
 * Starts the exchange of one HTTP/1.1 request (read as `method` and
 * `rawHeaders`, judged as `fwd`) with the app over `pool`, for either
 * reader of the inbound (node:http's server here, h1-connection.ts):
 * `defaultHost` goes as `Host` when neither the client nor `fwd` gave one.
 * Returns what to call when the client went away, or undefined, with
 * nothing sent, when the head could not be sent as one (see requestHead).
 */
export function exchangeHttp1(pool: AppConnectionPool, defaultHost: string, method: string, rawHeaders: readonly string[], fwd: Forward, source: BodySource, sink: AnswerSink): (() => void) | undefined {
  const head = requestHead(method, fwd.target, upstreamHeaders(rawHeaders, fwd.xfcc, fwd.host ?? defaultHost));
  if (head === undefined) return undefined;
  return exchangeWithApp(pool, { head, method, body: chunkedBody(rawHeaders) ? 'chunked' : 'length', source }, sink);
}

/**
 * Makes a forwarder to `appHost:appPort` with its own connection pool (or
 * `pool`, shared with the inbound's own HTTP/1.1 reader, h1-connection.ts).
 * Requests go over pooled raw connections (app-connection-pool.ts): the head
 * written as one string, the body as it comes (chunked bodies chunked
 * again, as node:http's client does), the answer read with llhttp. An
 * Upgrade offer goes through node:http's client, whose 'upgrade' handling
 * hands over the app's socket.
 */
export function forwardHttpRequest(opts: { appHost: string; appPort: number; pool?: AppConnectionPool }): HttpForwarder {
  const pool = opts.pool ?? new AppConnectionPool(opts.appHost, opts.appPort);
  const upgrades = forwardUpgrade(opts);
  const defaultHost = `${opts.appHost}:${opts.appPort}`;
  return (req, res, fwd, onUpstreamError) => {
    if (fwd.upgrade) return upgrades(req, res, fwd, onUpstreamError);
    // The app failed before it answered: 502, counted (the caller learns the app's protocol again);
    // after it began to answer, the client's connection is cut so that a cut body never passes as whole.
    const upstreamFailed = (): void => {
      if (!res.headersSent) onUpstreamError();
      answerUpstreamFailure(res);
    };
    const trailers = takesTrailers(req.rawHeaders);
    const dropUpstream = exchangeHttp1(pool, defaultHost, req.method ?? 'GET', req.rawHeaders, fwd, req, {
      head: (status, statusMessage, rawHeaders) => void res.writeHead(status, statusMessage, downstreamHeaders(rawHeaders)),
      write: (chunk) => res.write(chunk) || res.destroyed,
      onDrain: (resume) => void res.once('drain', resume),
      end: (rawTrailers) => {
        // Chunked trailers go to a client that said it takes them (`TE: trailers`); to any other they are dropped (RFC 9110 §6.5.1).
        if (trailers) passTrailers(res, rawTrailers);
        res.end();
      },
      failed: upstreamFailed,
    });
    if (dropUpstream === undefined) {
      // Not reached through Node's parser, which refuses such bytes; checked because a bad line here would split the request.
      req.resume();
      return answerPlain(res, 400, 'bad request\n');
    }
    // A client that goes away mid-request, or whose response stopped part-way, ends this exchange only
    // (after a complete answer the exchange is over and this does nothing).
    req.on('error', dropUpstream);
    res.on('error', dropUpstream);
    res.once('close', dropUpstream);
  };
}

/**
 * Ends `res` after the app failed: a byte-correct 502 before anything was
 * sent, else the client's connection is cut, so that a cut answer never
 * passes as a whole one.
 */
export function answerUpstreamFailure(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else answerPlain(res, 502, 'upstream connect error\n');
}

function answerPlain(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The node:http client forwarder, for requests that offer an Upgrade. */
function forwardUpgrade(opts: { appHost: string; appPort: number }): HttpForwarder {
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  const defaultHost = `${opts.appHost}:${opts.appPort}`;
  return (req, res, fwd, onUpstreamError) => {
    const up = httpRequest(
      { host: opts.appHost, port: opts.appPort, method: req.method, path: fwd.target, headers: upstreamHeaders(req.rawHeaders, fwd.xfcc, fwd.host ?? defaultHost, fwd.upgrade?.protocol), agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, downstreamHeaders(upRes.rawHeaders));
        // Chunked trailers go to a client that said it takes them (`TE: trailers`), registered before
        // forwardBody's 'end' listener ends the response; to any other client they are dropped (RFC 9110 §6.5.1).
        if (takesTrailers(req.rawHeaders)) upRes.once('end', () => passTrailers(res, upRes.rawTrailers));
        forwardBody(upRes, res, true);
      },
    );
    // Node's client emits 'upgrade' only for a 101 to a request that offered one; without this listener it would drop the connection.
    if (fwd.upgrade) up.on('upgrade', (upRes: IncomingMessage, socket: Socket, head: Buffer) => fwd.upgrade!.onSwitch(upRes, socket, head));
    up.setNoDelay(true);
    // A client that goes away mid-request, or an app that resets mid-response,
    // ends this exchange only: an unhandled stream error would end the process.
    let clientGone = false;
    const dropUpstream = (): void => {
      clientGone = true;
      up.destroy();
    };
    req.on('error', dropUpstream);
    res.on('error', dropUpstream);
    // The client went away before the response was complete: drop the exchange with the app too.
    res.once('close', () => {
      if (!res.writableFinished) dropUpstream();
    });
    up.on('response', (upRes) => upRes.on('error', () => res.destroy()));
    up.on('error', () => {
      if (clientGone) return;
      onUpstreamError();
      answerUpstreamFailure(res);
    });
    forwardBody(req, up);
  };
}
