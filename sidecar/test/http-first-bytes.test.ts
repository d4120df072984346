/**
 * `/http` ports read a connection's first bytes to tell HTTP/2 with prior
 * knowledge from HTTP/1.1. The sidecar's sockets are half-open, so a peer
 * that sent FIN before those bytes told anything gave the reader an 'end'
 * and never a 'close': the connection stayed open for good (a descriptor
 * per health check or pre-warmed pool connection that closes unused). Real
 * sidecar listeners and raw sockets; the reader itself on a real socket pair.
 */
import { expect } from 'chai';
import { connect, createServer, type Socket } from 'node:net';
import { TestCa } from '@trellis/testkit';
import { dataPaths, type Sidecar } from './helpers/harness';
import { httpClientSidecar, httpServerSidecar } from './helpers/http-pair';
import { startEchoApp } from './helpers/fixture';
import { readFirstBytes } from '../src/proxy/first-bytes';

const TD = 'cluster.local';

/** Connects to `port`, writes `bytes` and FIN; resolves with whether the sidecar closed its side within `ms`. */
function closesAfterFin(port: number, bytes: string, ms = 5000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.end(bytes));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, ms);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A connected socket pair: `client` writes, `server` is what readFirstBytes reads (paused, half-open like the sidecar's). */
async function socketPair(): Promise<{ client: Socket; server: Socket; close(): void }> {
  let accepted!: (s: Socket) => void;
  const got = new Promise<Socket>((r) => (accepted = r));
  const srv = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => accepted(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const client = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const server = await got;
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

const classify = (seen: Buffer): 'yes' | 'need-more' => (seen.length >= 4 ? 'yes' : 'need-more');

describe('Reading a connection\'s first bytes (real sockets)', () => {
  it('Should close a connection whose peer sent FIN before the bytes told anything, or call onEnd instead', async () => {
    const a = await socketPair();
    try {
      const closed = new Promise<void>((r) => a.server.once('close', () => r()));
      readFirstBytes(a.server, classify, () => expect.fail('nothing was classified'));
      a.client.end('ab');
      await closed;
    } finally {
      a.close();
    }
    const b = await socketPair();
    try {
      const ended = new Promise<void>((r) => readFirstBytes(b.server, classify, () => expect.fail('nothing was classified'), { onEnd: () => r() }));
      b.client.end();
      await ended;
      expect(b.server.destroyed, 'onEnd decides what becomes of the socket').to.equal(false);
    } finally {
      b.close();
    }
  });

  it('Should hand a peer that stops part-way on as the fallback after the timeout, with its bytes put back', async () => {
    const p = await socketPair();
    try {
      const handed = new Promise<{ kind: string; seen: string }>((r) => readFirstBytes(p.server, classify, (kind, seen) => r({ kind, seen: seen.toString() }), { timeoutMs: 100, fallback: 'yes' }));
      p.client.write('ab');
      expect(await handed).to.deep.equal({ kind: 'yes', seen: 'ab' });
      const again = new Promise<string>((r) => p.server.once('data', (d: Buffer) => r(d.toString())));
      p.server.resume();
      expect(await again, 'the bytes seen are read again by whoever takes the socket').to.equal('ab');
    } finally {
      p.close();
    }
  });
});

for (const dataPath of dataPaths()) describe(`/http ports close a connection that ends before its first bytes tell its protocol [${dataPath}]`, function () {
  this.timeout(30_000);
  let server: Sidecar;
  let client: Sidecar;
  let app: Awaited<ReturnType<typeof startEchoApp>>;

  before(async () => {
    const ca = await TestCa.create(TD);
    app = await startEchoApp();
    server = await httpServerSidecar(ca, app.port, dataPath, { mode: 'PERMISSIVE', detectTimeoutMs: 200 });
    client = await httpClientSidecar(ca, server, dataPath);
  });

  after(async () => {
    await client.stop(0);
    await server.stop(0);
    await app.close();
  });

  it('Should close an app\'s outbound connection that ends without a byte, or part-way through the HTTP/2 preface', async () => {
    const port = client.outbound[0]!.port;
    expect(await closesAfterFin(port, ''), 'no byte').to.equal(true);
    expect(await closesAfterFin(port, 'PRI * HT'), 'part of the preface').to.equal(true);
  });

  it('Should close an h2c connection whose client sends its preface and SETTINGS, then FIN', async () => {
    const hello = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + '\x00\x00\x00\x04\x00\x00\x00\x00\x00';
    expect(await closesAfterFin(server.inbound[0]!.port, hello), 'inbound (PERMISSIVE)').to.equal(true);
    expect(await closesAfterFin(client.outbound[0]!.port, hello), 'outbound').to.equal(true);
  });

  it('Should still answer a request an h2c client sent before its FIN, then close', async () => {
    // GET / with :authority localhost, END_STREAM | END_HEADERS on stream 1 (HPACK: static entries and one literal).
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x41, 0x09]), Buffer.from('localhost')]);
    const headers = Buffer.concat([Buffer.from([0, 0, block.length, 0x01, 0x05, 0, 0, 0, 1]), block]);
    const hello = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 0x04, 0, 0, 0, 0, 0]), headers]);
    const got = await new Promise<{ answered: boolean; closed: boolean }>((resolve) => {
      let buf = Buffer.alloc(0);
      const s = connect(server.inbound[0]!.port, '127.0.0.1', () => s.end(hello));
      const timer = setTimeout(() => {
        s.destroy();
        resolve({ answered: answered(), closed: false });
      }, 10_000);
      s.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(timer);
        resolve({ answered: answered(), closed: true });
      });
      // A HEADERS frame (type 1) on stream 1 among the frames the sidecar sent.
      function answered(): boolean {
        for (let i = 0; i + 9 <= buf.length; i += 9 + buf.readUIntBE(i, 3)) if (buf[i + 3] === 0x01 && buf.readUInt32BE(i + 5) === 1) return true;
        return false;
      }
    });
    expect(got).to.deep.equal({ answered: true, closed: true });
  });

  it('Should close a plaintext inbound connection (PERMISSIVE) that ends part-way through the HTTP/2 preface', async () => {
    expect(await closesAfterFin(server.inbound[0]!.port, 'PRI * HTTP/2')).to.equal(true);
  });
});
