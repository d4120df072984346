/**
 * Forwards one HTTP request from a `/http` inbound port to the application
 * over a keep-alive connection pool, replacing `x-forwarded-client-cert`
 * with the one we vouch for: a client can never forge its identity header.
 */
import { Agent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';

/** Forwards `req` to the app and streams the answer back on `res`. */
export type HttpForwarder = (req: IncomingMessage, res: ServerResponse, xfcc: string | undefined, onUpstreamError: () => void) => void;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-forwarded-client-cert']);

/** The header set sent to the app: hop-by-hop and client-sent XFCC removed, ours added. Pure. */
export function upstreamHeaders(headers: IncomingMessage['headers'], xfcc: string | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  if (xfcc !== undefined) out['x-forwarded-client-cert'] = xfcc;
  return out;
}

/** Makes a forwarder to `appHost:appPort` with its own connection pool. */
export function forwardHttpRequest(opts: { appHost: string; appPort: number }): HttpForwarder {
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  return (req, res, xfcc, onUpstreamError) => {
    const up = httpRequest(
      { host: opts.appHost, port: opts.appPort, method: req.method, path: req.url, headers: upstreamHeaders(req.headers, xfcc), agent },
      (upRes) => {
        const headers: OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive') headers[k] = v;
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
        upRes.pipe(res);
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
    req.pipe(up);
  };
}
