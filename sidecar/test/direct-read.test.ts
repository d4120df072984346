import { expect } from 'chai';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { adoptDirectRead } from '../src/proxy/direct-read';
import { splice } from '../src/proxy/splice';

const MB = 1024 * 1024;
const pattern = (i: number): number => (i * 31 + 7) & 0xff;

function patterned(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = pattern(from + i);
  return b;
}

function listen(onConn: (s: Socket) => void, opts: { pauseOnConnect?: boolean } = {}): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false }, onConn);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, port: (server.address() as { port: number }).port })));
}

/**
 * A one-hop proxy made the way the listeners make theirs: an accepted,
 * paused socket switched to the direct read path and spliced to a fresh
 * connection to `target`.
 */
async function directProxy(target: number, beforeAdopt?: (s: Socket) => void): Promise<{ server: Server; port: number; adopted: boolean[]; ups: Socket[] }> {
  const adopted: boolean[] = [];
  const ups: Socket[] = [];
  const p = await listen(
    (s) => {
      beforeAdopt?.(s);
      const direct = adoptDirectRead(s);
      adopted.push(direct !== undefined);
      const up = netConnect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
      ups.push(up);
      s.resume();
      splice(s, up, undefined, { aDirect: direct });
    },
    { pauseOnConnect: true },
  );
  return { ...p, adopted, ups };
}

describe('Direct reads on accepted sockets', function () {
  this.timeout(30_000);

  it('Should carry a large upload byte-exact to a slow reader, with the sender held back meanwhile', async () => {
    const total = 32 * MB;
    let received = 0;
    let ok = true;
    let paused = 0;
    const sink = await listen((s) => {
      s.on('data', (d: Buffer) => {
        for (let i = 0; i < d.length; i += 1021) if (d[i] !== pattern(received + i)) ok = false;
        if (d[d.length - 1] !== pattern(received + d.length - 1)) ok = false;
        received += d.length;
        if (received % (4 * MB) < d.length) {
          paused++;
          s.pause();
          setTimeout(() => s.resume(), 50);
        }
      });
      s.on('end', () => s.end());
    });
    const proxy = await directProxy(sink.port);
    // How much the proxy ever held in memory for the slow side.
    let maxQueued = 0;
    const sampler = setInterval(() => {
      for (const u of proxy.ups) maxQueued = Math.max(maxQueued, u.writableLength);
    }, 2);
    try {
      const blocked = await new Promise<number>((resolve, reject) => {
        const c = netConnect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
        let sent = 0;
        let blockedWrites = 0;
        const pump = (): void => {
          while (sent < total) {
            const n = Math.min(256 * 1024, total - sent);
            const ok2 = c.write(patterned(sent, n));
            sent += n;
            if (!ok2) {
              blockedWrites++;
              return void c.once('drain', pump);
            }
          }
          c.end();
        };
        c.on('error', reject);
        c.on('close', () => resolve(blockedWrites));
        c.resume();
        pump();
      });
      expect(proxy.adopted).to.deep.equal([true]);
      expect(received).to.equal(total);
      expect(ok).to.equal(true);
      expect(paused).to.be.greaterThan(3);
      // The proxy stopped reading while the sink was slow: the sender saw full
      // buffers and the proxy never queued more than a few reads' worth.
      expect(blocked).to.be.greaterThan(0);
      expect(maxQueued).to.be.greaterThan(0);
      expect(maxQueued).to.be.lessThan(1 * MB);
    } finally {
      clearInterval(sampler);
      proxy.server.close();
      sink.server.close();
    }
  });

  it('Should deliver bytes already buffered on the socket before the adoption first, in order', async () => {
    let got = Buffer.alloc(0);
    const sink = await listen((s) => {
      s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      s.on('end', () => s.end());
    });
    // Like PERMISSIVE sniffing: bytes read, then put back before the hand-over.
    const proxy = await directProxy(sink.port, (s) => s.unshift(Buffer.from('sniffed-')));
    try {
      await new Promise<void>((resolve, reject) => {
        const c = netConnect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true }, () => {
          c.write('first-');
          setTimeout(() => c.end('second'), 50);
        });
        c.on('error', reject);
        c.on('close', () => resolve());
        c.resume();
      });
      expect(proxy.adopted).to.deep.equal([true]);
      expect(got.toString()).to.equal('sniffed-first-second');
    } finally {
      proxy.server.close();
      sink.server.close();
    }
  });

  it('Should pass a half-close through and still carry the reply back', async () => {
    const sink = await listen((s) => {
      let req = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (req += d));
      s.on('end', () => s.end(`reply to ${req}`));
    });
    const proxy = await directProxy(sink.port);
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        let out = '';
        const c = netConnect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true }, () => c.end('question'));
        c.setEncoding('utf8');
        c.on('data', (d: string) => (out += d));
        c.on('error', reject);
        c.on('close', () => resolve(out));
      });
      expect(reply).to.equal('reply to question');
    } finally {
      proxy.server.close();
      sink.server.close();
    }
  });
});
