/**
 * The `l7` part of `npm run bench -- dataplane` (issue #15): HTTP through
 * `/http` listeners, side by side in one run.
 *   http1  wrk → app (direct) | client sidecar /http outbound ═mTLS (the app's HTTP/1.1 bytes)═ server sidecar /http inbound → app
 *          | the same with a byte-forwarding outbound (`trellis_tcp_outbound`: HTTP/1.1 over one mTLS connection per app connection)
 *          | haproxy `mode http` pair (HTTP/1.1 between them, haproxy's default), both proxies with one
 *          path rule and one header rewrite (Trellis: an AuthorizationPolicy with one path, and XFCC)
 *   http2  h2load (-c4 -m32) → h2c app | the Trellis pair (and with a byte-forwarding outbound) | haproxy with
 *          `proto h2` on every hop
 *   grpc   a grpc-js client process (unary: 32 calls in flight; streaming: 8 ping-pong bidi streams)
 *          → grpc-js server | the Trellis pair
 * Each path is loaded in interleaved rounds (A, B, C, A, B, C) so that noise
 * from other work on a shared machine hits all alike; CPU per request is
 * the proxies' user+system time over the requests they carried.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, policiesFromJSON, type AuthorizationPolicy } from '@trellis/shared';
import { freePort, type TestCa } from '@trellis/testkit';
import { cpuTimes, median, rssMb, sidecarNodeArgs, startJsonChild } from './bench-process';

/** What the dataplane benchmark hands over. */
export interface L7Input {
  ca: TestCa;
  server: { keyPem: string; chainPem: string };
  client: { keyPem: string; chainPem: string };
  /** The HTTP/1.1 app (bench-app.ts). */
  h1AppPort: number;
  dir: string;
  children: ChildProcess[];
  seconds: number;
  notes: string[];
}

interface Sample {
  rps: number;
  p99_ms: number;
  errors: number;
}
interface PathResult extends Sample {
  proxy_cpu_ms_per_1k_req?: number;
  /** The same CPU by process (server side, then client side) and by kind, ms per 1,000 requests: where the cost is. */
  proxy_cpu_split?: { server: { user: number; sys: number }; client: { user: number; sys: number } };
}
interface Path {
  name: string;
  pids: Array<number | undefined>;
  load(seconds: number): Promise<Sample>;
}

const SERVER_ID = 'spiffe://bench.local/ns/bench/sa/server';
const ROUNDS = 2;

function runTool(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}

/** wrk's duration text (`812.00us`, `3.1ms`, `1.02s`) in ms. */
function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

async function wrk(port: number, seconds: number): Promise<Sample> {
  const out = await runTool('wrk', ['-t1', '-c32', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`]);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p99 = wrkMs(/\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?timeout (\d+)/.exec(out)?.[1] ?? 0);
  return { rps: Math.round(rps), p99_ms: Math.round(p99 * 100) / 100, errors };
}

let logSeq = 0;
async function h2load(dir: string, port: number, seconds: number): Promise<Sample> {
  const log = join(dir, `h2load-${logSeq++}.log`);
  const out = await runTool('h2load', ['-c4', '-m32', '-D', String(seconds), `--log-file=${log}`, `http://127.0.0.1:${port}/`]);
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const failed = /requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored/.exec(out);
  // The log has one line per request: start (µs since start), status, duration (µs).
  const durations = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => Number(l.split('\t')[2]) / 1000)
    .sort((a, b) => a - b);
  const p99 = durations.length ? durations[Math.min(durations.length - 1, Math.floor(durations.length * 0.99))]! : NaN;
  return { rps: Math.round(rps), p99_ms: Math.round(p99 * 100) / 100, errors: failed ? Number(failed[1]) + Number(failed[2]) : NaN };
}

async function grpcLoad(port: number, mode: 'unary' | 'stream', seconds: number): Promise<Sample> {
  const out = await runTool(process.execPath, [join(__dirname, 'l7-grpc-load.js'), `127.0.0.1:${port}`, mode, String(seconds), mode === 'unary' ? '32' : '8']);
  const r = JSON.parse(out.trim().split('\n').pop()!) as { per_s: number; p99_ms: number; errors: number };
  return { rps: r.per_s, p99_ms: r.p99_ms, errors: r.errors };
}

/** Loads `paths` in interleaved rounds; rps summed over rounds, p99 the median of the rounds'. */
async function interleaved(paths: Path[], seconds: number): Promise<Record<string, PathResult>> {
  for (const p of paths) await p.load(1);
  const acc = paths.map((p) => ({ requests: 0, secs: 0, cpu: 0, byPid: p.pids.map(() => ({ user: 0, sys: 0 })), p99: [] as number[], errors: 0 }));
  const per = Math.max(1, Math.round(seconds / ROUNDS));
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < paths.length; i++) {
      const p = paths[i]!;
      const before = p.pids.map(cpuTimes);
      const s = await p.load(per);
      p.pids.map(cpuTimes).forEach((t, j) => {
        acc[i]!.cpu += t.user + t.sys - before[j]!.user - before[j]!.sys;
        acc[i]!.byPid[j]!.user += t.user - before[j]!.user;
        acc[i]!.byPid[j]!.sys += t.sys - before[j]!.sys;
      });
      acc[i]!.requests += s.rps * per;
      acc[i]!.secs += per;
      acc[i]!.p99.push(s.p99_ms);
      acc[i]!.errors += s.errors;
    }
  }
  const out: Record<string, PathResult> = {};
  paths.forEach((p, i) => {
    const a = acc[i]!;
    out[p.name] = { rps: Math.round(a.requests / a.secs), p99_ms: median(a.p99), errors: a.errors };
    const per1k = (ms: number): number => Math.round((ms / (a.requests / 1000)) * 100) / 100;
    if (p.pids.length > 0 && a.requests > 0) out[p.name]!.proxy_cpu_ms_per_1k_req = per1k(a.cpu);
    if (p.pids.length === 2 && a.requests > 0) {
      const [sv, cl] = a.byPid as [{ user: number; sys: number }, { user: number; sys: number }];
      out[p.name]!.proxy_cpu_split = { server: { user: per1k(sv.user), sys: per1k(sv.sys) }, client: { user: per1k(cl.user), sys: per1k(cl.sys) } };
    }
  });
  return out;
}

/** Trellis against haproxy, each ratio rounded to two places (rps: higher is better; p99 and CPU: lower). */
function versus(t: PathResult, h: PathResult | undefined): Record<string, number | null> {
  const r = (a: number | undefined, b: number | undefined): number | null => (a !== undefined && b !== undefined && b > 0 ? Math.round((a / b) * 100) / 100 : null);
  return { rps: r(t.rps, h?.rps), p99: r(t.p99_ms, h?.p99_ms), cpu_per_request: r(t.proxy_cpu_ms_per_1k_req, h?.proxy_cpu_ms_per_1k_req) };
}

/** Runs the l7 measurements; returns the `l7` object of the dataplane line. */
export async function runL7(d: L7Input): Promise<Record<string, unknown>> {
  const apps = await startJsonChild(process.execPath, [join(__dirname, 'l7-apps.js')]);
  d.children.push(apps.child);
  const h2cPort = apps.info.h2c as number;
  const grpcPort = apps.info.grpc as number;
  // One path rule on the Trellis side: an AuthorizationPolicy allowing `/*` (the XFCC rewrite is always on).
  const manifests = [
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'bench', namespace: 'bench', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/*'] } }] }] } },
  ];
  // Sent as the control plane pushes it: compiled (the sidecar decodes it without a schema engine).
  const authz = policiesFromJSON(manifests, 'bench').filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  const policies = { wireVersion: AUTHZ_WIRE_VERSION, policies: encodeAuthorizationPolicies(authz) };
  const sidecar = (input: object): Promise<{ child: ChildProcess; info: Record<string, unknown> }> => startJsonChild(process.execPath, [...sidecarNodeArgs(), join(__dirname, 'bench-sidecar.js')], JSON.stringify(input));
  const server = await sidecar({
    ...d.server,
    rootsPem: [d.ca.root.pem],
    policies,
    inbound: [d.h1AppPort, h2cPort, grpcPort].map((appPort) => ({ host: '127.0.0.1', port: 0, appPort, http: true })),
    outbound: [],
  });
  d.children.push(server.child);
  const serverIn = server.info.inbound as number[];
  const client = await sidecar({
    ...d.client,
    rootsPem: [d.ca.root.pem],
    inbound: [],
    outbound: [
      ...serverIn.map((p) => ({ host: '127.0.0.1', port: 0, http: true, target: { kind: 'explicit', address: `127.0.0.1:${p}`, spiffeId: SERVER_ID } })),
      // The same requests also through byte-forwarding outbounds (no /http): one mTLS connection per app connection.
      { host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${serverIn[0]!}`, spiffeId: SERVER_ID } },
      { host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${serverIn[1]!}`, spiffeId: SERVER_ID } },
    ],
  });
  d.children.push(client.child);
  const [outH1, outH2, outGrpc, outH1Tcp, outH2Tcp] = client.info.outbound as [number, number, number, number, number];
  const trellisPids = [server.child.pid, client.child.pid];
  await new Promise((r) => setTimeout(r, 300));
  const idle = { server: rssMb(server.child.pid), client: rssMb(client.child.pid) };

  // The haproxy pair in `mode http`: one path rule (deny unless /...) and one header rewrite (XFCC from the client certificate).
  let haproxy: { h1: number; h2: number; pids: Array<number | undefined> } | undefined;
  const bin = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).stdout.trim();
  if (bin === '') d.notes.push('haproxy not installed: l7 haproxy pair skipped');
  else {
    const f = (n: string): string => join(d.dir, n);
    writeFileSync(f('l7-root.pem'), d.ca.root.pem);
    writeFileSync(f('l7-server.pem'), d.server.chainPem + d.server.keyPem, { mode: 0o600 });
    writeFileSync(f('l7-client.pem'), d.client.chainPem + d.client.keyPem, { mode: 0o600 });
    const [s1, s2, c1, c2] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const tls = (role: 'server' | 'client'): string => `ssl crt ${f(`l7-${role}.pem`)} ca-file ${f('l7-root.pem')} verify required ssl-min-ver TLSv1.2`;
    const common = 'global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
    const rules = '  http-request deny unless { path_beg / }\n  http-request set-header x-forwarded-client-cert "Hash=%[ssl_c_sha1,hex];Subject=%[ssl_c_s_dn]"\n';
    writeFileSync(
      f('l7-server.cfg'),
      `${common}frontend h1\n  bind 127.0.0.1:${s1} ${tls('server')}\n${rules}  default_backend h1app\nbackend h1app\n  server app 127.0.0.1:${d.h1AppPort}\n` +
        `frontend h2\n  bind 127.0.0.1:${s2} ${tls('server')} alpn h2\n${rules}  default_backend h2app\nbackend h2app\n  server app 127.0.0.1:${h2cPort} proto h2\n`,
    );
    writeFileSync(
      f('l7-client.cfg'),
      `${common}frontend h1\n  bind 127.0.0.1:${c1}\n  default_backend up1\nbackend up1\n  server s 127.0.0.1:${s1} ${tls('client')}\n` +
        `frontend h2\n  bind 127.0.0.1:${c2} proto h2\n  default_backend up2\nbackend up2\n  server s 127.0.0.1:${s2} ${tls('client')} alpn h2\n`,
    );
    const pids: Array<number | undefined> = [];
    for (const cfg of ['l7-server.cfg', 'l7-client.cfg']) {
      const h = spawn(bin, ['-db', '-f', f(cfg)], { stdio: ['ignore', 'ignore', 'inherit'] });
      d.children.push(h);
      pids.push(h.pid);
    }
    haproxy = { h1: c1, h2: c2, pids };
    await new Promise((r) => setTimeout(r, 700));
  }

  const seconds = d.seconds;
  const http1 = await interleaved(
    [
      { name: 'direct', pids: [], load: (s) => wrk(d.h1AppPort, s) },
      { name: 'trellis', pids: trellisPids, load: (s) => wrk(outH1, s) },
      { name: 'trellis_tcp_outbound', pids: trellisPids, load: (s) => wrk(outH1Tcp, s) },
      ...(haproxy ? [{ name: 'haproxy', pids: haproxy.pids, load: (s: number) => wrk(haproxy!.h1, s) }] : []),
    ],
    seconds,
  );
  let underLoad = { server: NaN, client: NaN };
  const http2 = await interleaved(
    [
      { name: 'direct', pids: [], load: (s) => h2load(d.dir, h2cPort, s) },
      {
        name: 'trellis',
        pids: trellisPids,
        load: (s) => {
          const t = setTimeout(() => (underLoad = { server: rssMb(server.child.pid), client: rssMb(client.child.pid) }), (s * 1000) / 2);
          return h2load(d.dir, outH2, s).finally(() => clearTimeout(t));
        },
      },
      { name: 'trellis_tcp_outbound', pids: trellisPids, load: (s) => h2load(d.dir, outH2Tcp, s) },
      ...(haproxy ? [{ name: 'haproxy', pids: haproxy.pids, load: (s: number) => h2load(d.dir, haproxy!.h2, s) }] : []),
    ],
    seconds,
  );
  const grpcUnary = await interleaved(
    [
      { name: 'direct', pids: [], load: (s) => grpcLoad(grpcPort, 'unary', s) },
      { name: 'trellis', pids: trellisPids, load: (s) => grpcLoad(outGrpc, 'unary', s) },
    ],
    seconds,
  );
  const grpcStream = await interleaved(
    [
      { name: 'direct', pids: [], load: (s) => grpcLoad(grpcPort, 'stream', s) },
      { name: 'trellis', pids: trellisPids, load: (s) => grpcLoad(outGrpc, 'stream', s) },
    ],
    seconds,
  );
  const vsDirect = (r: Record<string, PathResult>): Record<string, number> => ({
    rps: Math.round((r.trellis!.rps / r.direct!.rps) * 100) / 100,
    p99: Math.round((r.trellis!.p99_ms / r.direct!.p99_ms) * 100) / 100,
  });
  return {
    http1: {
      tool: 'wrk -t1 -c32',
      ...http1,
      trellis_vs_haproxy: versus(http1.trellis!, http1.haproxy),
      trellis_tcp_outbound_vs_haproxy: versus(http1.trellis_tcp_outbound!, http1.haproxy),
    },
    http2: {
      tool: 'h2load -c4 -m32',
      ...http2,
      trellis_vs_haproxy: versus(http2.trellis!, http2.haproxy),
      trellis_tcp_outbound_vs_haproxy: versus(http2.trellis_tcp_outbound!, http2.haproxy),
    },
    grpc_unary: { tool: 'grpc-js, 32 calls in flight, 64 B', ...grpcUnary, trellis_vs_direct: vsDirect(grpcUnary) },
    grpc_streaming: { tool: 'grpc-js, 8 bidi ping-pong streams, 64 B', ...grpcStream, trellis_vs_direct: vsDirect(grpcStream) },
    rss_mb: { idle, under_h2_load: underLoad },
    seconds_per_path: seconds,
  };
}
