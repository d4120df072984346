/**
 * One bidirectional-streaming gRPC call over its own HTTP/2 + TLS session,
 * on node:http2 alone: the transport of the discovery client, which needs
 * exactly one call per connection.
 *
 * The request is sent only after the TLS handshake has completed and the
 * server passed `checkServerIdentity`, so call metadata (a bearer token)
 * never reaches a server that failed verification. Keepalive is HTTP/2 PING
 * every `keepaliveMs`, and a ping unanswered within `keepaliveTimeoutMs`
 * ends the call UNAVAILABLE (grpc-js's `grpc.keepalive_time_ms` and
 * `grpc.keepalive_timeout_ms`). The call has no deadline (it lives until
 * either side ends it); connecting has `connectTimeoutMs`. Every way the call
 * can end is reported once through `onStatus`, with the status grpc-js
 * would report; `cancel()` ends it silently.
 */
import * as http2 from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import { withoutCertificateCompression } from '@trellis/shared';
import { frameMessage, MessageDeframer } from './grpc-framing';
import { GrpcStatus, statusFromHttp, statusFromRstCode, statusFromTrailers, type CallStatus } from './grpc-status';
import { DiscoveryError, DiscoveryErrorCode } from './discovery-error';

/** TLS settings of the connection. */
export interface CallTls {
  /** Roots the server's chain must verify against (PEM). */
  caPem: string;
  /** Client certificate chain and key for mTLS, or undefined. */
  certPem?: string;
  keyPem?: string;
  /** SNI to send. */
  servername: string;
  /** Replaces the hostname check; return an Error to refuse the server. */
  checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined;
  /** The OpenSSL groups to offer, in order (the key-exchange policy); absent: node:tls's default. */
  ecdhCurve?: string;
}

/** Options of one call. */
export interface BidiCallOptions {
  /** host:port (IPv6 in brackets). */
  address: string;
  /** `/package.Service/Method`. */
  path: string;
  tls: CallTls;
  /** Custom metadata (lower-case ASCII keys). */
  metadata: Readonly<Record<string, string>>;
  maxReceiveMessageBytes: number;
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
  connectTimeoutMs: number;
}

/** What the call reports. */
export interface BidiCallListener {
  /** Response headers arrived (not sent for a trailers-only response). */
  onMetadata(headers: Readonly<Record<string, string>>): void;
  onMessage(message: Buffer): void;
  /** The call ended (exactly once, never after cancel()). */
  onStatus(status: CallStatus): void;
}

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, NGHTTP2_CANCEL, NGHTTP2_NO_ERROR } = http2.constants;
const USER_AGENT = 'trellis-sidecar (node:http2)';
/** Headers the transport sets or HTTP/2 forbids: as metadata they would override ours or make the request throw. */
const RESERVED_HEADERS = new Set(['content-type', 'te', 'user-agent', 'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/**
 * Custom metadata must be valid gRPC ASCII headers (lower-case name, printable
 * ASCII value); node:http2 would otherwise drop an invalid header silently and
 * send the call without it. Throws DiscoveryError TRELLIS_DISCOVERY_BAD_METADATA
 * naming the key, never the value (it may be a token).
 */
export function checkMetadata(metadata: Readonly<Record<string, string>>): void {
  for (const [k, v] of Object.entries(metadata)) {
    if (!/^[0-9a-z_.-]+$/.test(k) || k.startsWith('grpc-') || k.endsWith('-bin') || RESERVED_HEADERS.has(k)) {
      throw new DiscoveryError(DiscoveryErrorCode.BAD_METADATA, `metadata key ${JSON.stringify(k)} is not a valid gRPC ASCII header name`, { key: k });
    }
    if (!/^[\x20-\x7e]*$/.test(v)) throw new DiscoveryError(DiscoveryErrorCode.BAD_METADATA, `metadata ${k}: value has characters outside printable ASCII`, { key: k });
  }
}

/** An open call; write() messages, cancel() to end it. */
export class GrpcBidiCall {
  private readonly session: http2.ClientHttp2Session;
  private stream: http2.ClientHttp2Stream | null = null;
  private readonly deframer: MessageDeframer;
  private done = false;
  private trailers: CallStatus | null = null;
  private readonly queued: Buffer[] = [];
  private connectTimer: NodeJS.Timeout | null = null;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: BidiCallOptions,
    private readonly listener: BidiCallListener,
  ) {
    checkMetadata(opts.metadata);
    this.deframer = new MessageDeframer(opts.maxReceiveMessageBytes);
    const t = opts.tls;
    this.session = http2.connect(`https://${opts.address}`, {
      ca: t.caPem,
      ...(t.certPem !== undefined && t.keyPem !== undefined ? { cert: t.certPem, key: t.keyPem } : {}),
      servername: t.servername,
      checkServerIdentity: t.checkServerIdentity,
      ...(t.ecdhCurve !== undefined ? { ecdhCurve: t.ecdhCurve } : {}),
      secureOptions: withoutCertificateCompression(),
      settings: { enablePush: false },
    });
    this.connectTimer = setTimeout(() => this.fail(GrpcStatus.UNAVAILABLE, `connect to ${opts.address} timed out after ${opts.connectTimeoutMs} ms`), opts.connectTimeoutMs);
    this.connectTimer.unref();
    this.session.on('error', (err: Error) => this.fail(GrpcStatus.UNAVAILABLE, `connection to ${opts.address} failed: ${err.message}`));
    this.session.on('goaway', () => {
      /* the stream still completes; 'close' below reports anything left */
    });
    this.session.on('close', () => (this.trailers ? this.finish(this.trailers) : this.fail(GrpcStatus.UNAVAILABLE, `connection to ${opts.address} closed`)));
    this.session.once('connect', () => this.onConnect());
  }

  /** Sends one message (queued until the stream is open). */
  write(message: Uint8Array): void {
    if (this.done) return;
    const frame = frameMessage(message);
    if (this.stream) this.stream.write(frame);
    else this.queued.push(frame);
  }

  /** Ends the call from our side (RST_STREAM CANCEL) and closes the connection; no status is reported. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.cleanup();
  }

  /**
   * Says goodbye: ends our half of the call (END_STREAM), which the server
   * reads as a client that is done rather than one that was lost, waits up
   * to `timeoutMs` for the server to finish its half, then closes the
   * connection (resetting the stream if it is still open). No status is
   * reported. A call not yet open is simply closed.
   */
  close(timeoutMs = 1000): Promise<void> {
    if (this.done) return Promise.resolve();
    this.done = true;
    const stream = this.stream;
    if (!stream || stream.closed || stream.destroyed) {
      this.cleanup();
      return Promise.resolve();
    }
    this.stopTimers();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.cleanup();
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      stream.once('close', finish);
      // The server's last messages and trailers still arrive; nothing reads them any more.
      stream.resume();
      stream.end();
    });
  }

  /** The key-exchange group of the TLS connection, once connected (OpenSSL's name), else undefined. */
  get group(): string | undefined {
    const socket = this.session.socket as { getEphemeralKeyInfo?(): { name?: string } | object | null } | undefined;
    const info = socket?.getEphemeralKeyInfo?.() as { name?: string } | null | undefined;
    return info?.name;
  }

  private onConnect(): void {
    if (this.done) return;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    const stream = this.session.request(
      {
        ':method': 'POST',
        ':path': this.opts.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'user-agent': USER_AGENT,
        'grpc-accept-encoding': 'identity',
        ...this.opts.metadata,
      },
      { endStream: false },
    );
    this.stream = stream;
    for (const f of this.queued.splice(0)) stream.write(f);
    stream.on('response', (headers, flags) => this.onResponse(headers, flags));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('trailers', (headers) => {
      this.trailers = statusFromTrailers(headers);
    });
    // The server's half is done and every message before it was delivered: the call is over,
    // though our half of the stream is still open (we never half-close this stream).
    stream.on('end', () => this.onServerDone());
    stream.on('error', () => {
      /* reported by 'close' with the reset code */
    });
    stream.on('close', () => this.onStreamClose(stream));
    this.startKeepalive();
  }

  private onResponse(headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, flags: number): void {
    if (this.done) return;
    const trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || headers['grpc-status'] !== undefined;
    const httpStatus = Number(headers[HTTP2_HEADER_STATUS]);
    if (trailersOnly && headers['grpc-status'] !== undefined) {
      this.trailers = statusFromTrailers(headers);
      return;
    }
    if (httpStatus !== 200) {
      this.fail(statusFromHttp(httpStatus), `unexpected HTTP status ${httpStatus}`);
      return;
    }
    const contentType = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? '');
    if (!contentType.startsWith('application/grpc')) {
      this.fail(GrpcStatus.UNKNOWN, `unexpected content-type ${JSON.stringify(contentType)}`);
      return;
    }
    if (trailersOnly) return; // END_STREAM without grpc-status: 'close' reports it
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':') && v !== undefined) md[k] = Array.isArray(v) ? v.join(',') : String(v);
    this.listener.onMetadata(md);
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    let messages: Buffer[];
    try {
      messages = this.deframer.push(chunk);
    } catch (err) {
      const e = err as DiscoveryError;
      this.fail(typeof e.details?.['grpcCode'] === 'number' ? (e.details['grpcCode'] as number) : GrpcStatus.INTERNAL, e.message);
      return;
    }
    for (const m of messages) {
      if (this.done) return;
      this.listener.onMessage(m);
    }
  }

  private onServerDone(): void {
    if (this.done || !this.trailers) return; // no trailers: 'close' reports the reset or loss
    if (this.trailers.code === GrpcStatus.OK && this.deframer.partial()) this.fail(GrpcStatus.INTERNAL, 'stream ended in the middle of a message');
    else this.finish(this.trailers);
  }

  private onStreamClose(stream: http2.ClientHttp2Stream): void {
    if (this.done) return;
    if (this.trailers) {
      this.onServerDone();
      return;
    }
    const rst = statusFromRstCode(stream.rstCode ?? 0);
    this.fail(rst.code, rst.details);
  }

  private startKeepalive(): void {
    const { keepaliveMs, keepaliveTimeoutMs } = this.opts;
    if (keepaliveMs <= 0) return;
    this.keepaliveTimer = setInterval(() => {
      if (this.done || this.pingTimer) return;
      this.pingTimer = setTimeout(() => this.fail(GrpcStatus.UNAVAILABLE, `keepalive ping not answered within ${keepaliveTimeoutMs} ms`), keepaliveTimeoutMs);
      this.pingTimer.unref();
      const sent = this.session.ping((err) => {
        if (this.pingTimer) clearTimeout(this.pingTimer);
        this.pingTimer = null;
        if (err && !this.done) this.fail(GrpcStatus.UNAVAILABLE, `keepalive ping failed: ${err.message}`);
      });
      if (!sent) this.fail(GrpcStatus.UNAVAILABLE, 'keepalive ping could not be sent');
    }, keepaliveMs);
    this.keepaliveTimer.unref();
  }

  private fail(code: number, details: string): void {
    this.finish({ code, details, metadata: {} });
  }

  private finish(status: CallStatus): void {
    if (this.done) return;
    this.done = true;
    this.cleanup(this.trailers === status ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    this.listener.onStatus(status);
  }

  private stopTimers(): void {
    for (const t of [this.connectTimer, this.pingTimer]) if (t) clearTimeout(t);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.connectTimer = this.pingTimer = this.keepaliveTimer = null;
  }

  /** Stops timers, resets our half of the stream with `rstCode` and closes the connection. */
  private cleanup(rstCode: number = NGHTTP2_CANCEL): void {
    this.stopTimers();
    const stream = this.stream;
    if (stream && !stream.closed) stream.close(rstCode);
    if (!this.session.destroyed) {
      this.session.close();
      // A peer that never answers the GOAWAY must not keep the socket open.
      setTimeout(() => this.session.destroy(), 1_000).unref();
    }
  }
}
