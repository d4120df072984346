/**
 * HTTP/1.1 on the wire for tests that must send exact bytes (attack strings
 * a client library would clean up) and check exact bytes back: a raw
 * exchange over plain TCP or real mTLS, a response-stream splitter, and a
 * "naive" app that answers 200 to everything it parses and logs it.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { TestCert } from '@trellis/testkit';

/** What came back on one connection, and whether the server closed it. */
export interface RawReply {
  readonly data: Buffer;
  /** True when the server ended the connection (before the client gave up). */
  readonly closedByServer: boolean;
}

/**
 * Writes `bytes` on one connection (plain, or mTLS with `tls`), never
 * half-closing, and collects everything until the server closes or
 * `quietMs` pass without data (default 3000 ms).
 */
export function rawExchange(port: number, bytes: string | Buffer, opts: { tls?: { client: TestCert & { chainPem: string }; ca: string }; quietMs?: number; onData?: (all: Buffer, s: Socket) => void } = {}): Promise<RawReply> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let serverClosed = false;
    let done = false;
    const s: Socket = opts.tls
      ? tlsConnect({ host: '127.0.0.1', port, ca: opts.tls.ca, key: opts.tls.client.key.keyPem, cert: opts.tls.client.chainPem, checkServerIdentity: () => undefined })
      : netConnect({ host: '127.0.0.1', port });
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closedByServer: serverClosed });
    };
    let timer = setTimeout(finish, opts.quietMs ?? 3000);
    s.once(opts.tls ? 'secureConnect' : 'connect', () => s.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      clearTimeout(timer);
      timer = setTimeout(finish, opts.quietMs ?? 3000);
      opts.onData?.(Buffer.concat(chunks), s);
    });
    s.on('end', () => {
      serverClosed = true;
      finish();
    });
    s.on('error', () => finish());
    s.on('close', () => {
      serverClosed = serverClosed || !done;
      finish();
    });
  });
}

/** One HTTP/1.1 response as it came over the wire. */
export interface WireResponse {
  readonly statusLine: string;
  readonly status: number;
  /** Header names lower-cased; a repeated header keeps every value. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
  header(name: string): string | undefined;
}

/**
 * Splits a byte stream into responses, framing each body the way a client
 * must (content-length, chunked, or to the end). Throws on anything that is
 * not a well-framed response, so a test using it checks the framing too.
 */
export function parseResponses(data: Buffer | string): WireResponse[] {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const out: WireResponse[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) throw new Error(`an unterminated response head at byte ${at}: ${JSON.stringify(text.slice(at, at + 80))}`);
    const lines = text.slice(at, end).split('\r\n');
    const statusLine = lines[0]!;
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(statusLine + ' ');
    if (!m) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
    const headers = lines.slice(1).map((l) => {
      const c = l.indexOf(':');
      if (c <= 0) throw new Error(`not a header line: ${JSON.stringify(l)}`);
      return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()] as const;
    });
    const get = (n: string): string | undefined => headers.find(([k]) => k === n)?.[1];
    let body: string;
    let next: number;
    const status = Number(m[1]);
    if (status === 101 || status === 204 || status === 304) {
      body = '';
      next = end + 4;
      if (status === 101) {
        out.push(response(statusLine, status, headers, text.slice(next)));
        return out;
      }
    } else if (get('content-length') !== undefined) {
      const len = Number(get('content-length'));
      body = text.slice(end + 4, end + 4 + len);
      if (body.length !== len) throw new Error(`content-length ${len} but only ${body.length} bytes followed`);
      next = end + 4 + len;
    } else if (/chunked/i.test(get('transfer-encoding') ?? '')) {
      let p = end + 4;
      body = '';
      for (;;) {
        const le = text.indexOf('\r\n', p);
        const size = parseInt(text.slice(p, le), 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        p = le + 2;
        if (size === 0) {
          p = text.indexOf('\r\n', p) + 2;
          break;
        }
        body += text.slice(p, p + size);
        p += size + 2;
      }
      next = p;
    } else {
      body = text.slice(end + 4);
      next = text.length;
    }
    out.push(response(statusLine, status, headers, body));
    at = next;
  }
  return out;
}

function response(statusLine: string, status: number, headers: ReadonlyArray<readonly [string, string]>, body: string): WireResponse {
  return { statusLine, status, headers, body, header: (n) => headers.find(([k]) => k === n.toLowerCase())?.[1] };
}

/** What the naive app parsed from one request. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly host: string | undefined;
  readonly xfcc: string | undefined;
  readonly upgrade: string | undefined;
  readonly rawHeaders: readonly string[];
}

/**
 * A plain Node HTTP server that does not speak WebSocket (or any upgrade):
 * it answers `200 ok <url>` to every request it parses, an Upgrade one
 * included, keeps parsing the connection afterwards (as Go, Java or a newer
 * Node answer an Upgrade they do not take), and logs what it saw.
 */
export async function startNaiveHttpApp(): Promise<{ port: number; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const record = (req: IncomingMessage): string => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined, upgrade: req.headers.upgrade, rawHeaders: req.rawHeaders });
    return `ok ${req.url}`;
  };
  const server: HttpServer = createHttpServer((req, res) => {
    const body = record(req);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const body = record(req);
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    if (head.length > 0) socket.unshift(head);
    server.emit('connection', socket);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** An app that accepts `Upgrade: websocket` with 101 and then echoes raw bytes prefixed with `raw:`. */
export async function startSwitchingApp(): Promise<{ port: number; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server: HttpServer = createHttpServer((_req, res) => {
    res.writeHead(426, { 'content-length': 0 });
    res.end();
  });
  const open = new Set<Socket>();
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined, upgrade: req.headers.upgrade, rawHeaders: req.rawHeaders });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-App: switched\r\n\r\nhello-after-101\n');
    const echo = (d: Buffer): void => {
      socket.write(Buffer.concat([Buffer.from('raw:'), d]));
    };
    if (head.length > 0) echo(head);
    socket.on('data', echo);
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    seen,
    close: () => {
      for (const s of open) s.destroy();
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
