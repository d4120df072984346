/**
 * Forwards one HTTP request from a `/http` inbound port to the application
 * over a keep-alive connection pool, replacing `x-forwarded-client-cert`
 * with the one we vouch for: a client can never forge its identity header.
 *
 * Headers travel as raw name/value lists both ways (no header objects built
 * and re-serialised), and bodies are forwarded with two listeners per
 * direction instead of pipe(): on this path per-request overhead is the cost.
 */
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Readable, Writable } from 'node:stream';

/** Forwards `req` to the app and streams the answer back on `res`. */
export type HttpForwarder = (req: IncomingMessage, res: ServerResponse, xfcc: string | undefined, onUpstreamError: () => void) => void;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-forwarded-client-cert']);
const RESPONSE_DROPPED = new Set(['connection', 'keep-alive']);

/**
 * The header list sent to the app, in `rawHeaders` form: hop-by-hop headers
 * and every client-sent XFCC (any letter case) removed, ours added; `host`
 * (when given) is added if the client sent none. Pure.
 */
export function upstreamHeaders(rawHeaders: readonly string[], xfcc: string | undefined, host?: string): string[] {
  const out: string[] = [];
  let sawHost = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === 'host') sawHost = true;
    out.push(name, rawHeaders[i + 1]!);
  }
  if (!sawHost && host !== undefined) out.push('host', host);
  if (xfcc !== undefined) out.push('x-forwarded-client-cert', xfcc);
  return out;
}

/** The app's response headers passed to the client, in `rawHeaders` form, without its connection management. Pure. */
export function downstreamHeaders(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (RESPONSE_DROPPED.has(rawHeaders[i]!.toLowerCase())) continue;
    out.push(rawHeaders[i]!, rawHeaders[i + 1]!);
  }
  return out;
}

/** Copies a body from `src` to `dst` with backpressure; ends `dst` when `src` ends. Once `dst` is destroyed the rest is read and dropped. */
function forwardBody(src: Readable, dst: Writable): void {
  const resume = (): void => {
    src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    if (!dst.write(chunk) && !dst.destroyed) {
      src.pause();
      dst.once('drain', resume);
    }
  });
  src.once('end', () => dst.end());
}

/** Makes a forwarder to `appHost:appPort` with its own connection pool. */
export function forwardHttpRequest(opts: { appHost: string; appPort: number }): HttpForwarder {
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  const defaultHost = `${opts.appHost}:${opts.appPort}`;
  return (req, res, xfcc, onUpstreamError) => {
    const up = httpRequest(
      { host: opts.appHost, port: opts.appPort, method: req.method, path: req.url, headers: upstreamHeaders(req.rawHeaders, xfcc, defaultHost), agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, downstreamHeaders(upRes.rawHeaders));
        forwardBody(upRes, res);
      },
    );
    up.setNoDelay(true);
    // A client that goes away mid-request, or an app that resets mid-response,
    // ends this exchange only: an unhandled stream error would end the process.
    req.on('error', () => up.destroy());
    res.on('error', () => up.destroy());
    up.on('response', (upRes) => upRes.on('error', () => res.destroy()));
    up.on('error', () => {
      onUpstreamError();
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain', 'content-length': 24 });
        res.end('upstream connect error\n');
      } else {
        res.destroy();
      }
    });
    forwardBody(req, up);
  };
}
