/**
 * `npm run bench -- key-exchange`: what the X25519MLKEM768 hybrid costs per
 * mTLS handshake, against X25519 alone, side by side in one run.
 *
 * A node:tls server (the sidecar's Node path and the native relay link the
 * same OpenSSL 3.5) configured as the `prefer` policy, with mTLS (P-256
 * SVIDs from a test CA), and clients offering either the prefer list (they
 * negotiate X25519MLKEM768) or X25519 only. Reported per mode:
 * - `handshakes_per_s`: full mTLS handshakes per second with `--concurrency`
 *   (default 8) loops; client and server share this process, so both sides'
 *   CPU is in it. No resumption: every handshake is a full one.
 * - `latency_ms`: p50 and p99 of one handshake at a time (connect to
 *   secureConnect, loopback).
 * - `client_hello_bytes`: the ClientHello on the wire (records included).
 * Rounds of the two modes alternate and the best round of each is kept, so
 * a noisy neighbour slows both alike; `ratio` is hybrid over X25519.
 * Flags: `--seconds=N` per round (default 1), `--rounds=N` (default 4).
 */
import { createServer as createNetServer, type Socket } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { groupsList, readClientHello } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { numberFlag } from './bench-flags';

interface Material {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const MODES = { hybrid: groupsList('prefer'), x25519: 'X25519' } as const;
type Mode = keyof typeof MODES;

async function material(): Promise<Material> {
  const ca = await TestCa.create('example.org');
  const server = await ca.issueLeaf('spiffe://example.org/ns/bench/sa/server');
  const client = await ca.issueLeaf('spiffe://example.org/ns/bench/sa/client');
  return { ca: ca.root.pem, serverCert: server.chainPem, serverKey: server.key.keyPem, clientCert: client.chainPem, clientKey: client.key.keyPem };
}

function handshake(port: number, m: Material, mode: Mode): Promise<{ ms: number; group: string }> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const s: TLSSocket = connect(
      { host: '127.0.0.1', port, ca: m.ca, cert: m.clientCert, key: m.clientKey, ecdhCurve: MODES[mode], checkServerIdentity: () => undefined, session: undefined },
      () => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const group = (s.getEphemeralKeyInfo() as { name?: string } | null)?.name ?? 'unknown';
        s.destroy();
        resolve({ ms, group });
      },
    );
    s.on('error', reject);
  });
}

async function rate(port: number, m: Material, mode: Mode, seconds: number, concurrency: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await handshake(port, m, mode);
        n++;
      }
    }),
  );
  return n / seconds;
}

async function latencies(port: number, m: Material, mode: Mode, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push((await handshake(port, m, mode)).ms);
  return out.sort((a, b) => a - b);
}

function pct(sorted: number[], p: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 1000) / 1000;
}

/** The ClientHello a client in `mode` sends, as a raw TCP server sees it. */
async function clientHelloBytes(m: Material, mode: Mode): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer((sock: Socket) => {
      let seen = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => {
        seen = Buffer.concat([seen, d]);
        const r = readClientHello(seen);
        if (r.status === 'incomplete') return;
        sock.destroy();
        srv.close();
        if (r.status === 'ok') resolve(r.hello.recordBytes);
        else reject(new Error(r.reason));
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const c = connect({ host: '127.0.0.1', port: (srv.address() as { port: number }).port, ca: m.ca, ecdhCurve: MODES[mode], checkServerIdentity: () => undefined });
      c.on('error', () => undefined);
    });
  });
}

/** Runs the benchmark. */
export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberFlag(args, 'seconds', 1);
  const rounds = numberFlag(args, 'rounds', 4);
  const concurrency = numberFlag(args, 'concurrency', 8);
  const m = await material();
  const server: Server = createServer({ cert: m.serverCert, key: m.serverKey, ca: m.ca, requestCert: true, rejectUnauthorized: true, ecdhCurve: groupsList('prefer'), sessionTimeout: 0, ticketKeys: undefined }, (s) => s.end());
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  try {
    const groups: Record<Mode, string> = { hybrid: (await handshake(port, m, 'hybrid')).group, x25519: (await handshake(port, m, 'x25519')).group };
    const best: Record<Mode, number> = { hybrid: 0, x25519: 0 };
    const lat: Record<Mode, number[]> = { hybrid: [], x25519: [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of (r % 2 === 0 ? ['hybrid', 'x25519'] : ['x25519', 'hybrid']) as Mode[]) {
        best[mode] = Math.max(best[mode], await rate(port, m, mode, seconds, concurrency));
        lat[mode].push(...(await latencies(port, m, mode, 100)));
      }
    }
    const out: Record<string, unknown> = { node: process.version, openssl: process.versions.openssl, concurrency, rounds };
    for (const mode of ['hybrid', 'x25519'] as Mode[]) {
      const sorted = lat[mode].sort((a, b) => a - b);
      out[mode] = { group: groups[mode], handshakes_per_s: Math.round(best[mode]), latency_ms: { p50: pct(sorted, 50), p99: pct(sorted, 99) }, client_hello_bytes: await clientHelloBytes(m, mode) };
    }
    const h = out['hybrid'] as { handshakes_per_s: number; latency_ms: { p50: number } };
    const x = out['x25519'] as { handshakes_per_s: number; latency_ms: { p50: number } };
    out['ratio_handshakes_per_s'] = Math.round((h.handshakes_per_s / x.handshakes_per_s) * 1000) / 1000;
    out['added_latency_ms_p50'] = Math.round((h.latency_ms.p50 - x.latency_ms.p50) * 1000) / 1000;
    return out;
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}
