/**
 * The inbound's own HTTP/1.1 reader (h1-connection.ts) on real TCP
 * connections: what it serves itself, what it hands to node:http's server
 * (and the exact bytes it hands over), its framing of the app's answers,
 * and its timeouts. The port around it (gate, pool, node:http's server) is
 * replaced by recording functions here; the whole path through a sidecar
 * is covered by the http-forwarder and one-view suites.
 */
import { expect } from 'chai';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { AnswerSink, BodySource } from '../src/inbound/app-exchange';
import { H1Connection, H1Sweeper, rebuildHead, type H1ConnectionDeps, type H1Request, type H1Timeouts } from '../src/inbound/h1-connection';
import type { Gate } from '../src/inbound/request-gate';

/** How the fake app answers one request: given the request and its whole body, drives the sink. */
type Answer = (req: H1Request, body: Buffer, sink: AnswerSink) => void;

const ok: Answer = (req, body, sink) => {
  const text = `${req.method} ${req.url} ${body.length}`;
  sink.head(200, 'OK', ['content-length', String(text.length), 'x-app', 'yes']);
  sink.write(Buffer.from(text));
  sink.end([]);
};

interface Harness {
  port: number;
  seen: H1Request[];
  handedOver: Buffer[];
  clientErrors: Array<[number, string]>;
  upstreamFailures: number;
  /** Exchanges the connection dropped (the client went away or timed out). */
  dropped: number;
  servable: boolean;
  draining: boolean;
  answer: Answer;
  /** Replaces the recording forward (which reads the whole body, then answers with `answer`). */
  forwardHook?: (req: H1Request, body: BodySource, sink: AnswerSink) => void;
  close(): Promise<void>;
}

async function harness(limits?: H1Timeouts): Promise<Harness> {
  const sweeper = new H1Sweeper(limits);
  const h: Harness = {
    port: 0,
    seen: [],
    handedOver: [],
    clientErrors: [],
    upstreamFailures: 0,
    dropped: 0,
    servable: true,
    draining: false,
    answer: ok,
    close: async () => undefined,
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (conn) => {
    sockets.add(conn);
    conn.on('error', () => conn.destroy());
    conn.on('close', () => sockets.delete(conn));
    const deps: H1ConnectionDeps = {
      servable: () => h.servable,
      gate: (r): Gate => {
        if (r.url.startsWith('/deny')) return { ok: false, status: 403, body: 'RBAC: access denied\n', close: false, denied: true };
        if (r.url.startsWith('/bad')) return { ok: false, status: 400, body: 'bad request: bad path\n', close: true, denied: false };
        return { ok: true, view: { ok: true, path: r.url, target: r.url }, xfcc: undefined };
      },
      forward: (r, _g, body: BodySource, sink) => {
        h.seen.push(r);
        if (h.forwardHook) {
          h.forwardHook(r, body, sink);
          return () => undefined;
        }
        const chunks: Buffer[] = [];
        body.on('data', (c) => chunks.push(c));
        let over = false;
        body.once('end', () => {
          over = true;
          h.answer(r, Buffer.concat(chunks), sink);
        });
        return () => {
          if (!over) h.dropped++;
          over = true;
        };
      },
      upstreamFailed: () => {
        h.upstreamFailures++;
      },
      clientError: (status, code) => h.clientErrors.push([status, code]),
      handOver: (bytes) => {
        h.handedOver.push(bytes);
        // Stands in for node:http's server: says how many bytes it was given first, then closes.
        conn.end(`HANDED ${bytes.length}\n`);
      },
      idleWhileDraining: () => conn.end(),
      draining: () => h.draining,
    };
    new H1Connection(conn, deps, sweeper);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.port = (server.address() as AddressInfo).port;
  h.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return h;
}

/** Sends `bytes` (pieces sent apart), half-closes when `end`, and collects everything until the server closes or `ms` pass. */
function exchange(port: number, pieces: string[], opts: { end?: boolean; ms?: number } = {}): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let data = '';
    let closed = false;
    s.setEncoding('latin1');
    s.on('data', (d: string) => (data += d));
    s.on('error', () => undefined);
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data, closed });
    }, opts.ms ?? 1500);
    s.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ data, closed });
    });
    s.once('connect', async () => {
      for (const p of pieces) {
        s.write(p, 'latin1');
        await new Promise((r) => setTimeout(r, 20));
      }
      if (opts.end) s.end();
    });
  });
}

/** The responses in `data`, split by their own framing (content-length or chunked). */
function responses(data: string): Array<{ status: number; headers: Record<string, string>; body: string }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: string }> = [];
  let rest = data;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    const lines = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    rest = rest.slice(end + 4);
    let body = '';
    if (headers['content-length'] !== undefined) {
      body = rest.slice(0, Number(headers['content-length']));
      rest = rest.slice(body.length);
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (size === 0) {
          const t = rest.startsWith('\r\n') ? -2 : rest.indexOf('\r\n\r\n');
          headers['(trailers)'] = t < 0 ? '' : rest.slice(0, t);
          rest = rest.slice(t + 4);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    }
    out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body });
  }
  if (rest !== '') out.push({ status: 0, headers: {}, body: rest });
  return out;
}

describe('The inbound HTTP/1.1 reader (llhttp, no node:http server)', function () {
  this.timeout(10_000);
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(() => h.close());

  it('Should serve keep-alive requests itself, with bodies by length and chunked, the app’s length kept and a Date added', async () => {
    const r = await exchange(h.port, [
      'GET /a HTTP/1.1\r\nHost: s\r\n\r\n',
      'POST /b HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello',
      'POST /c HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n',
    ]);
    const rs = responses(r.data);
    expect(rs.map((x) => [x.status, x.body])).to.deep.equal([
      [200, 'GET /a 0'],
      [200, 'POST /b 5'],
      [200, 'POST /c 7'],
    ]);
    expect(rs[0]!.headers['x-app']).to.equal('yes');
    expect(rs[0]!.headers['connection']).to.equal('keep-alive');
    expect(Date.parse(rs[0]!.headers['date']!)).to.be.closeTo(Date.now(), 10_000);
    expect(h.handedOver).to.have.length(0);
    expect(h.seen.map((s) => s.host)).to.deep.equal(['s', 's', 's']);
  });

  it('Should chunk an answer the app framed by closing, and pass trailers only to a client that sent TE: trailers', async () => {
    h.answer = (_req, _body, sink) => {
      sink.head(200, '', ['content-type', 'text/plain']);
      sink.write(Buffer.from('part1'));
      sink.write(Buffer.from('part2'));
      sink.end(['grpc-status', '0', 'content-length', '9']);
    };
    const withTe = responses((await exchange(h.port, ['GET / HTTP/1.1\r\nHost: s\r\nTE: trailers\r\nConnection: close\r\n\r\n'])).data);
    expect(withTe[0]!.status).to.equal(200);
    expect(withTe[0]!.headers['transfer-encoding']).to.equal('chunked');
    expect(withTe[0]!.body).to.equal('part1part2');
    // Framing fields never travel as trailers.
    expect(withTe[0]!.headers['(trailers)']).to.equal('grpc-status: 0');
    const without = responses((await exchange(h.port, ['GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n'])).data);
    expect(without[0]!.body).to.equal('part1part2');
    expect(without[0]!.headers['(trailers)']).to.equal('');
  });

  it('Should send no body for HEAD, 204 and 304, whatever the app said', async () => {
    h.answer = (req, _body, sink) => {
      const status = req.url === '/204' ? 204 : req.url === '/304' ? 304 : 200;
      sink.head(status, '', status === 200 ? ['content-length', '10'] : []);
      sink.end([]);
    };
    const r = await exchange(h.port, ['HEAD / HTTP/1.1\r\nHost: s\r\n\r\nGET /204 HTTP/1.1\r\nHost: s\r\n\r\nGET /304 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n']);
    // HEAD's content-length describes a body that is not sent: split the heads by hand.
    const heads = r.data.split('\r\n\r\n').filter((x) => x !== '');
    expect(heads.map((x) => x.split('\r\n')[0])).to.deep.equal(['HTTP/1.1 200 OK', 'HTTP/1.1 204 No Content', 'HTTP/1.1 304 Not Modified']);
    expect(r.data).to.not.include('Transfer-Encoding');
    expect(r.closed).to.equal(true);
  });

  it('Should answer a refusal byte-correct, keep the connection after a 403 and close it after a 400 without reading on', async () => {
    const r = await exchange(h.port, [
      'POST /deny HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc' + 'GET /ok HTTP/1.1\r\nHost: s\r\n\r\n' + 'GET /bad HTTP/1.1\r\nHost: s\r\n\r\n' + 'GET /never HTTP/1.1\r\nHost: s\r\n\r\n',
    ]);
    const rs = responses(r.data);
    expect(rs.map((x) => [x.status, x.body])).to.deep.equal([
      [403, 'RBAC: access denied\n'],
      [200, 'GET /ok 0'],
      [400, 'bad request: bad path\n'],
    ]);
    expect(rs[2]!.headers['connection']).to.equal('close');
    expect(r.closed).to.equal(true);
    expect(h.seen.map((s) => s.url)).to.deep.equal(['/ok']);
  });

  it('Should hand node:http the exact head it read and every byte after it, for each request it does not serve', async () => {
    const cases = [
      'GET /old HTTP/1.0\r\nHost: s\r\n\r\n',
      'GET /chat HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      'POST /e HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n',
      'GET /nohost HTTP/1.1\r\nX-A: 1\r\n\r\n',
      'CONNECT s:443 HTTP/1.1\r\nHost: s:443\r\n\r\n',
    ];
    for (const head of cases) {
      const before = h.handedOver.length;
      const after = 'NEXT BYTES';
      const r = await exchange(h.port, [head + after]);
      expect(h.handedOver.length, head).to.equal(before + 1);
      // Header lines are written back as llhttp read them (name, value without surrounding space).
      expect(h.handedOver[before]!.toString('latin1'), head).to.equal(head + after);
      expect(r.data).to.equal(`HANDED ${head.length + after.length}\n`);
    }
    expect(h.seen).to.have.length(0);
  });

  it('Should hand over a pipelined request only after the answer in flight, and a request once the app is no longer known to speak HTTP/1.1', async () => {
    let release: (() => void) | undefined;
    h.answer = (req, body, sink) => {
      release = () => ok(req, body, sink);
    };
    const pending = exchange(h.port, ['GET /slow HTTP/1.1\r\nHost: s\r\n\r\nGET /next HTTP/1.1\r\nHost: s\r\n\r\n'], { ms: 3000 });
    await new Promise((r) => setTimeout(r, 200));
    expect(h.handedOver, 'nothing handed over while /slow is unanswered').to.have.length(0);
    release!();
    const r = await pending;
    expect(r.data).to.match(/^HTTP\/1\.1 200 OK\r\n[\s\S]*GET \/slow 0HANDED \d+\n$/);
    expect(h.handedOver[0]!.toString('latin1')).to.equal('GET /next HTTP/1.1\r\nHost: s\r\n\r\n');

    h.answer = ok;
    h.servable = false;
    const plain = 'GET /h2app HTTP/1.1\r\nHost: s\r\n\r\n';
    const r2 = await exchange(h.port, [plain]);
    expect(r2.data).to.equal(`HANDED ${plain.length}\n`);
    expect(h.handedOver[1]!.toString('latin1')).to.equal(plain);
  });

  it('Should read the next request after an exchange that paused the body and ended without resuming it', async () => {
    // As the pooled exchange does when the app stops reading: pause on the body, and the answer comes anyway.
    h.answer = ok;
    const pausingForward = (r: H1Request, body: BodySource, sink: AnswerSink): void => {
      body.on('data', () => body.pause());
      body.once('end', () => ok(r, Buffer.alloc(3), sink));
    };
    h.forwardHook = pausingForward;
    const r = await exchange(h.port, ['POST /p HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc', 'GET /next HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n'], { ms: 3000 });
    expect(responses(r.data).map((x) => x.body)).to.deep.equal(['POST /p 3', 'GET /next 3']);
    expect(r.closed).to.equal(true);
  });

  it('Should answer 400 and close on bytes llhttp refuses, and 431 on a head that is too large', async () => {
    const bad = await exchange(h.port, ['GET /x HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n']);
    expect(responses(bad.data)[0]!.status).to.equal(400);
    expect(bad.closed).to.equal(true);
    const big = await exchange(h.port, [`GET /x HTTP/1.1\r\nHost: s\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
    expect(responses(big.data)[0]!.status).to.equal(431);
    expect(h.clientErrors.map((e) => e[0])).to.deep.equal([400, 431]);
    expect(h.seen).to.have.length(0);
  });

  it('Should answer a client that half-closed after its request, then end the connection', async () => {
    let release: (() => void) | undefined;
    h.answer = (req, body, sink) => {
      release = () => ok(req, body, sink);
    };
    const pending = exchange(h.port, ['GET /late HTTP/1.1\r\nHost: s\r\n\r\n'], { end: true, ms: 3000 });
    await new Promise((r) => setTimeout(r, 200));
    release!();
    const r = await pending;
    expect(responses(r.data).map((x) => x.body)).to.deep.equal(['GET /late 0']);
    expect(r.closed).to.equal(true);
  });

  it('Should answer 502 when the app failed before answering, and cut the connection when it failed mid-answer', async () => {
    h.answer = (req, _body, sink) => {
      if (req.url === '/mid') {
        sink.head(200, 'OK', ['content-length', '100']);
        sink.write(Buffer.from('partial'));
      }
      sink.failed();
    };
    const before = await exchange(h.port, ['GET /x HTTP/1.1\r\nHost: s\r\n\r\nGET /y HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n']);
    expect(responses(before.data).map((x) => [x.status, x.body])).to.deep.equal([
      [502, 'upstream connect error\n'],
      [502, 'upstream connect error\n'],
    ]);
    expect(h.upstreamFailures).to.equal(2);
    // After the head, a failure cuts the connection: no 502 after a started answer, and no answer that looks whole.
    const mid = await exchange(h.port, ['GET /mid HTTP/1.1\r\nHost: s\r\n\r\n']);
    expect(mid.closed).to.equal(true);
    expect(mid.data).to.not.include('502');
    expect(mid.data.length).to.be.below(100);
    expect(h.upstreamFailures).to.equal(2);
  });

  it('Should say Connection: close on answers started during a drain and close the connection after them', async () => {
    h.draining = true;
    const r = await exchange(h.port, ['GET /a HTTP/1.1\r\nHost: s\r\n\r\nGET /b HTTP/1.1\r\nHost: s\r\n\r\n']);
    const rs = responses(r.data);
    expect(rs.map((x) => x.body)).to.deep.equal(['GET /a 0']);
    expect(rs[0]!.headers['connection']).to.equal('close');
    expect(r.closed).to.equal(true);
  });
});

describe('The inbound HTTP/1.1 reader’s timeouts', function () {
  this.timeout(10_000);
  let h: Harness;
  before(async () => {
    h = await harness({ headersMs: 300, requestMs: 600, keepAliveMs: 400, checkEveryMs: 50 });
  });
  after(() => h.close());

  it('Should answer 408 to a head still incomplete after the headers timeout, however it trickles', async () => {
    const pieces = ['GET /slow HTTP/1.1\r\n', 'Host: s\r\n', 'X-A: 1\r\n', 'X-B: 2\r\n', 'X-C: 3\r\n', 'X-D: 4\r\n'];
    const r = await exchange(h.port, pieces.flatMap((p) => [p, ...Array<string>(5).fill('')]), { ms: 3000 });
    expect(responses(r.data)[0]!.status).to.equal(408);
    expect(r.closed).to.equal(true);
  });

  it('Should answer 408 to a body still incomplete after the request timeout, and drop the request at the app', async () => {
    const dropsBefore = h.dropped;
    const r = await exchange(h.port, ['POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: 10\r\n\r\nabc'], { ms: 3000 });
    expect(responses(r.data)[0]!.status).to.equal(408);
    expect(r.closed).to.equal(true);
    expect(h.clientErrors.filter((e) => e[0] === 408)).to.have.length(2);
    expect(h.dropped).to.equal(dropsBefore + 1);
  });

  it('Should close a keep-alive connection idle past the keep-alive timeout, and not one whose answer is slow', async () => {
    const idle = await exchange(h.port, ['GET /a HTTP/1.1\r\nHost: s\r\n\r\n'], { ms: 3000 });
    expect(responses(idle.data).map((x) => x.body)).to.deep.equal(['GET /a 0']);
    expect(idle.closed).to.equal(true);
    h.answer = (req, body, sink) => setTimeout(() => ok(req, body, sink), 1000);
    const slow = await exchange(h.port, ['GET /slow HTTP/1.1\r\nHost: s\r\n\r\n'], { ms: 3000 });
    expect(responses(slow.data).map((x) => x.body)).to.deep.equal(['GET /slow 0']);
  });
});

describe('The inbound HTTP/1.1 reader under malformed and cut input', function () {
  this.timeout(30_000);
  let h: Harness;
  before(async () => {
    h = await harness();
  });
  after(() => h.close());

  /** A small seeded generator, so that a failure can be replayed. */
  function prng(seed: number): () => number {
    let x = seed >>> 0 || 1;
    return () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 0x100000000;
    };
  }

  function randomRequest(rnd: () => number): string[] {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const method = pick(['GET', 'POST', 'HEAD', 'PUT', 'CONNECT', 'OPTIONS', 'G\x00T', 'BREW']);
    const target = pick(['/', '/deny', '/bad', '/a?b=c', '*', 'http://x/y', '/%', '/\x7f', '/a b', '']);
    const version = pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x']);
    const headers: string[] = [];
    for (let i = Math.floor(rnd() * 5); i > 0; i--) {
      headers.push(
        pick(['Host: s', 'Host: s', 'Host: t', 'Content-Length: 3', 'Content-Length: -1', 'Content-Length: 99999999999999999999', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip', 'Expect: 100-continue', 'Connection: close', 'Connection: upgrade', 'Upgrade: websocket', 'TE: trailers', 'X-A:\tv', ' folded: x', 'Bad Name: y', 'X-B: \x01']),
      );
    }
    const body = pick(['', 'abc', '3\r\nabc\r\n0\r\n\r\n', 'zz\r\n', '0\r\nX-T: 1\r\n\r\n', 'GET / HTTP/1.1\r\nHost: s\r\n\r\n']);
    const whole = `${method} ${target} ${version}\r\n${headers.join('\r\n')}${headers.length ? '\r\n' : ''}\r\n${body}`;
    // Cut anywhere, and in pieces anywhere.
    const cut = rnd() < 0.3 ? whole.slice(0, Math.floor(rnd() * whole.length)) : whole;
    const pieces: string[] = [];
    for (let i = 0; i < cut.length; ) {
      const n = 1 + Math.floor(rnd() * 40);
      pieces.push(cut.slice(i, i + n));
      i += n;
    }
    return pieces;
  }

  it('Should answer every connection with well-framed responses or close it, never throw, and keep serving', async () => {
    const rnd = prng(20261207);
    const cases = Array.from({ length: 240 }, () => ({ pieces: randomRequest(rnd), end: rnd() < 0.5 }));
    for (let i = 0; i < cases.length; i += 40) {
      const batch = cases.slice(i, i + 40);
      const results = await Promise.all(batch.map((c) => exchange(h.port, c.pieces, { end: c.end, ms: 800 })));
      results.forEach((r, j) => {
        const what = JSON.stringify(batch[j]!.pieces.join(''));
        // Either nothing, or bytes that begin as a response (ours) or as what the stand-in for node:http writes.
        if (r.data !== '') expect(r.data, what).to.match(/^(HTTP\/1\.1 \d{3} |HANDED \d+\n)/);
      });
    }
    const after = await exchange(h.port, ['GET /still HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n']);
    expect(responses(after.data).map((x) => x.body)).to.deep.equal(['GET /still 0']);
  });
});

describe('rebuildHead', () => {
  it('Should write a head back as its request line and header lines', () => {
    expect(rebuildHead('GET', '/a?b', 1, 0, ['Host', 'x', 'X-Y', 'a b'])).to.equal('GET /a?b HTTP/1.0\r\nHost: x\r\nX-Y: a b\r\n\r\n');
  });
});
