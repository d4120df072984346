/**
 * Moving one HTTP exchange between two hops of which at least one is an
 * HTTP/2 stream: request body one way, status, headers, body and trailers
 * the other, and a reset on either side ended on the other (a client that
 * cancels, a gRPC deadline, an app that resets). Bodies go through
 * http-forwarder.ts's `forwardBody` (pipe()'s backpressure at a fraction of
 * its listeners), and that backpressure is HTTP/2 flow control here: when the
 * reader stops, the writable side fills to its high-water mark, the
 * source is paused and stops granting window to its sender, so what we
 * buffer per stream is bounded by the stream window plus one high-water
 * mark, whatever the sender has left to send.
 */
import { constants, type ClientHttp2Stream, type Http2Stream, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { addAbortSignal } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { h1ResponseFromH2, h2ResponseFromH2 } from './h2-headers';
import { answerUpstreamFailure, forwardBody, passTrailers, takesTrailers } from '../inbound/http-forwarder';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = constants;

/** True when a stream's HEADERS frame ended it (`flags` of a 'stream' event): a request without a body. */
export function endedWithHeaders(flags: number): boolean {
  return (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
}

/**
 * Resets `stream` with RST_STREAM, so its peer reads it as cut. Node's
 * `close(code)` on a stream whose own side is still open ends that side
 * first (an END_STREAM), and when the peer's side has ended too (any
 * request with its body sent) the stream is then closed and the reset never
 * leaves: the peer would read a cut answer as a whole one. Destroying the
 * stream resets it without ending it: with an AbortError (attached through
 * `addAbortSignal`) as CANCEL, with any other error as INTERNAL_ERROR. Once
 * our side has ended, `close(code)` sends the reset with `code` itself.
 */
export function resetStream(stream: Http2Stream, code: number): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.writableEnded) stream.close(code);
  else if (code === NGHTTP2_CANCEL) addAbortSignal(AbortSignal.abort(), stream);
  else stream.destroy(new Error(`stream reset (HTTP/2 error ${code})`));
}

/** What to answer on the downstream hop when the upstream fails before any response. */
export interface UpstreamFailure {
  /** The headers of the answer (a 502, or gRPC UNAVAILABLE for a gRPC request). */
  readonly headers: OutgoingHttpHeaders;
  readonly body: string;
  /** Called once when the upstream failed (to count it). */
  onError(): void;
}

/** Answers `down` with `headers` and `body` and ends it, unless it is gone. */
export function answer(down: ServerHttp2Stream, headers: OutgoingHttpHeaders, body = ''): void {
  if (down.destroyed || down.closed || down.headersSent) return;
  if (body === '') {
    down.respond(headers, { endStream: true });
    return;
  }
  down.respond({ ...headers, 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  down.end(body);
}

/** Fails the downstream hop after an upstream error: the prepared answer, or a reset once a response has started. */
export function failDown(down: ServerHttp2Stream, failure: UpstreamFailure): void {
  if (down.destroyed || down.closed) return;
  if (!down.headersSent) {
    failure.onError();
    answer(down, failure.headers, failure.body);
  } else {
    resetStream(down, NGHTTP2_INTERNAL_ERROR);
  }
}

/**
 * HTTP/2 → HTTP/2: `down` (our server stream) relayed to `up` (our client
 * stream, already requested). Trailers are passed when the client said it
 * takes them (`te: trailers`, which every gRPC client sends; RFC 9110
 * §6.5.1): holding every stream open for trailers that may never come
 * costs a frame and a callback per request.
 */
export function relayH2ToH2(down: ServerHttp2Stream, up: ClientHttp2Stream, failure: UpstreamFailure, trailersWanted = true): void {
  let trailers: OutgoingHttpHeaders = {};
  // A request that ended with its headers was requested with endStream (no body to pipe, no empty DATA frame).
  if (up.writable) forwardBody(down, up, false, () => resetStream(up, NGHTTP2_CANCEL));
  else down.resume();
  up.on('response', (_h, flags: number, raw: string[]) => {
    const headers = h2ResponseFromH2(raw);
    if (down.destroyed || down.closed) return;
    // A trailers-only answer (gRPC's errors) stays one HEADERS frame with END_STREAM.
    if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      down.respond(headers, { endStream: true });
      return;
    }
    down.respond(headers, { waitForTrailers: trailersWanted });
    forwardBody(up, down, false, () => resetStream(down, NGHTTP2_INTERNAL_ERROR));
  });
  up.on('trailers', (_t, _flags: number, raw: string[]) => {
    trailers = h2ResponseFromH2(raw);
  });
  // With no trailers Node ends the stream with an empty DATA frame (END_STREAM) instead of an empty HEADERS frame.
  down.on('wantTrailers', () => down.sendTrailers(trailers));
  up.on('error', () => failDown(down, failure));
  down.on('error', () => undefined);
  up.on('close', () => {
    if (down.closed || down.destroyed) return;
    // Closed before any answer, however (a reset, or its session destroyed with code 0): the prepared failure.
    if (!down.headersSent) failDown(down, failure);
    else if (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR) resetStream(down, up.rstCode);
  });
  // The client went away (or reset) before the answer was through: cancel upstream too. After a complete
  // answer the upstream stream is done already, and a cancel would only cost a frame and an error object.
  down.on('close', () => {
    const aborted = down.rstCode !== undefined && down.rstCode !== NGHTTP2_NO_ERROR;
    if (!up.closed && !up.destroyed && (aborted || !up.readableEnded)) resetStream(up, aborted ? down.rstCode : NGHTTP2_CANCEL);
  });
}

/**
 * HTTP/1.1 → HTTP/2: `req`/`res` (an HTTP/1.1 exchange) relayed to `up`, a
 * stream to an app that speaks h2c. The app's HTTP/2 trailers reach an
 * HTTP/1.1 client that sent `TE: trailers` as chunked trailers (RFC 9112
 * §7.1.2), as Envoy does when its downstream takes trailers; for any other
 * client they are dropped (RFC 9110 §6.5.1).
 */
export function relayH1ToH2(req: IncomingMessage, res: ServerResponse, up: ClientHttp2Stream, onError: () => void): void {
  if (up.writable) forwardBody(req, up);
  else req.resume();
  up.on('response', (_h, _flags: number, raw: string[]) => {
    const status = Number(raw[raw.indexOf(':status') + 1] ?? 502);
    res.writeHead(status, h1ResponseFromH2(raw));
    // A cut answer loses its last chunk: the client sees the connection end mid-body, not a whole response.
    forwardBody(up, res, false, () => res.destroy());
  });
  // 'trailers' comes before the stream's 'end', on which forwardBody ends `res`.
  if (takesTrailers(req.rawHeaders)) up.on('trailers', (_t, _flags: number, raw: string[]) => passTrailers(res, raw));
  const fail = (): void => {
    if (!res.headersSent) onError();
    answerUpstreamFailure(res);
  };
  up.on('error', fail);
  up.on('close', () => {
    if (res.writableFinished) return;
    if (!res.headersSent || (up.rstCode !== undefined && up.rstCode !== NGHTTP2_NO_ERROR)) fail();
  });
  req.on('error', () => resetStream(up, NGHTTP2_CANCEL));
  res.on('close', () => {
    if (!res.writableFinished) resetStream(up, NGHTTP2_CANCEL);
  });
}

/** True when an HTTP/1.1 request announces no body (no `Transfer-Encoding`, no non-zero `Content-Length`). */
export function h1WithoutBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (cl === undefined || cl.trim() === '0');
}
