/**
 * `npm run bench -- dataplane`: the data path measured side by side in one
 * run, with the same load generator (autocannon, in this process) and the
 * same app (its own process):
 *   direct   autocannon → app
 *   trellis  autocannon → client sidecar (outbound) ═mTLS═ server sidecar (inbound) → app
 *            on the data path `auto` picks (`data_path`: the native relay when built),
 *            and the same pair on the Node path (`trellis_node_path`) when that was native
 *   haproxy  autocannon → client haproxy ═mTLS═ server haproxy → app  (Debian haproxy, one thread each)
 * plus single-stream bulk throughput through the Trellis pair (median of
 * three interleaved runs after a cold one, which is reported too), new mTLS
 * handshakes per second against the server sidecar (with the client's default
 * groups, so X25519MLKEM768 with the sidecar and X25519 with haproxy's OpenSSL
 * 3.0, and again with X25519 alone on both: `_x25519`), and each sidecar's idle
 * and loaded RSS, the same Trellis pair through an /http listener
 * (`trellis_http_port`: per-request authorization and XFCC) (plus the idle RSS of the real `trellis sidecar` binary,
 * which also loads every other CLI command); the same bulk and handshake
 * measures direct and through
 * haproxy are reported under `reference` so the machine's noise can be read
 * off as ratios. Both proxy pairs run in TCP mode with the same TestCa
 * certificates and verify the peer against the same root.
 *
 * Then the `l7` object (dataplane/l7.ts): HTTP/1.1, HTTP/2 and gRPC through
 * `/http` listeners against haproxy in `mode http` and direct.
 *
 * Flags: --duration=SECONDS (default 8), --connections=N (default 32),
 * --bulk-mb=N (default 256), --l7-only (only the `l7` object).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { TestCa, freePort, makeTmpDir, trellisSpawn } from '@trellis/testkit';
import { measureIdleRssWithPolicies } from './dataplane/idle-rss-with-policies';
import { cpuTimes, median, rssMb, runtimeFloorMb, sidecarNodeArgs, startJsonChild } from './dataplane/bench-process';
import { runL7 } from './dataplane/l7';

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  errors: number;
  non2xx: number;
  timeouts: number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Promise<CannonResult>;

function flagValue(flags: string[], name: string, dflt: number): number {
  const f = flags.find((x) => x.startsWith(`--${name}=`));
  return f ? Number(f.slice(name.length + 3)) : dflt;
}

/** One load path: where to send requests and which proxy processes to charge CPU to (server side first, then client side). */
interface LoadPath {
  port: number;
  pids: Array<number | undefined>;
}

/** The load result of one path. */
interface LoadResult {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  proxy_cpu_ms_per_1k_req?: number;
  /** The same split by proxy (server side: inbound hop; client side: outbound hop) and by user space / kernel. */
  proxy_cpu_split?: { server_ms_per_1k: number; client_ms_per_1k: number; user_share: number };
}

/**
 * Loads every path with the same autocannon settings, interleaved in
 * `rounds` short rounds (A, B, C, A, B, C, ...) so that drifting load from
 * other work on a shared machine hits all paths alike. Besides requests/s
 * and latency (the median of the rounds' p50 and p99) it reports the CPU the
 * proxy processes spent per 1000 requests, which is steadier still.
 */
async function loadInterleaved(paths: LoadPath[], seconds: number, connections: number, rounds = 4): Promise<LoadResult[]> {
  // A short warm-up so JIT, session caches and connection pools are in steady state.
  for (const p of paths) await autocannon({ url: `http://127.0.0.1:${p.port}/`, connections, duration: 1 });
  const acc = paths.map((p) => ({ requests: 0, seconds: 0, cpu: 0, user: 0, byPid: p.pids.map(() => 0), errors: 0, p50: [] as number[], p99: [] as number[] }));
  const per = Math.max(1, Math.round(seconds / rounds));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < paths.length; i++) {
      const p = paths[i]!;
      const a = acc[i]!;
      const before = p.pids.map(cpuTimes);
      const res = await autocannon({ url: `http://127.0.0.1:${p.port}/`, connections, duration: per });
      p.pids.map(cpuTimes).forEach((t, j) => {
        const used = t.user + t.sys - before[j]!.user - before[j]!.sys;
        a.cpu += used;
        a.user += t.user - before[j]!.user;
        a.byPid[j] += used;
      });
      a.requests += res.requests.total;
      a.seconds += per;
      a.errors += res.errors + res.non2xx + res.timeouts;
      a.p50.push(res.latency.p50);
      a.p99.push(res.latency.p99);
    }
  }
  return acc.map((a, i) => {
    const out: LoadResult = { rps: Math.round(a.requests / a.seconds), p50_ms: median(a.p50), p99_ms: median(a.p99), errors: a.errors };
    const per1k = (ms: number): number => Math.round((ms / (a.requests / 1000)) * 100) / 100;
    if (paths[i]!.pids.length > 0 && a.requests > 0) out.proxy_cpu_ms_per_1k_req = per1k(a.cpu);
    if (paths[i]!.pids.length === 2 && a.requests > 0 && a.cpu > 0) {
      out.proxy_cpu_split = { server_ms_per_1k: per1k(a.byPid[0]!), client_ms_per_1k: per1k(a.byPid[1]!), user_share: Math.round((a.user / a.cpu) * 100) / 100 };
    }
    return out;
  });
}

function bulk(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let bytes = 0;
    const s = netConnect({ host: '127.0.0.1', port });
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('error', reject);
    s.on('close', () => {
      const secs = Number(process.hrtime.bigint() - start) / 1e9;
      resolve(Math.round(bytes / 1024 / 1024 / secs));
    });
  });
}

/** New mTLS handshakes per second; `ecdhCurve` limits the groups the client offers (default: node:tls's, the hybrid first). */
async function handshakesPerSecond(port: number, client: { key: string; cert: string; ca: string }, seconds: number, ecdhCurve?: string, parallel = 8): Promise<number> {
  let done = 0;
  const deadline = Date.now() + seconds * 1000;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port, key: client.key, cert: client.cert, ca: client.ca, checkServerIdentity: () => undefined, ...(ecdhCurve ? { ecdhCurve } : {}) });
      s.on('secureConnect', () => {
        done++;
        s.destroy();
        resolve();
      });
      s.on('error', () => resolve());
    });
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  return Math.round(done / seconds);
}

/** The benchmark entry point. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const seconds = flagValue(flags, 'duration', 8);
  const connections = flagValue(flags, 'connections', 32);
  const bulkMb = flagValue(flags, 'bulk-mb', 256);
  const l7Only = flags.includes('--l7-only');
  const tmp = makeTmpDir('trellis-bench-dataplane-');
  const children: ChildProcess[] = [];
  const notes: string[] = [];
  try {
    const ca = await TestCa.create('bench.local');
    const serverLeaf = await ca.issueLeaf('spiffe://bench.local/ns/bench/sa/server', { notAfter: new Date(Date.now() + 6 * 3600_000) });
    const clientLeaf = await ca.issueLeaf('spiffe://bench.local/ns/bench/sa/client', { notAfter: new Date(Date.now() + 6 * 3600_000) });

    const app = await startJsonChild(process.execPath, [join(__dirname, 'dataplane', 'bench-app.js')], undefined, { BULK_MB: String(bulkMb) });
    children.push(app.child);
    const appPort = app.info.http as number;
    const bulkPort = app.info.bulk as number;
    const l7 = (): Promise<Record<string, unknown>> =>
      runL7({ ca, server: { keyPem: serverLeaf.key.keyPem, chainPem: serverLeaf.chainPem }, client: { keyPem: clientLeaf.key.keyPem, chainPem: clientLeaf.chainPem }, h1AppPort: appPort, dir: tmp.dir, children, seconds, notes });
    if (l7Only) return { l7: await l7(), ...(notes.length ? { notes } : {}) };

    // The Trellis pair, on the data path `auto` picks (the native relay when built),
    // and a second pair on the Node path for comparison.
    const startPair = async (dataPath: 'auto' | 'node'): Promise<{ server: ChildProcess; client: ChildProcess; dataPath: string; serverIn: number; out: [number, number, number] }> => {
      const server = await startJsonChild(
        process.execPath,
        [...sidecarNodeArgs(), join(__dirname, 'dataplane', 'bench-sidecar.js')],
        JSON.stringify({
          keyPem: serverLeaf.key.keyPem,
          chainPem: serverLeaf.chainPem,
          rootsPem: [ca.root.pem],
          dataPath,
          inbound: [
            { host: '127.0.0.1', port: 0, appPort, http: false },
            { host: '127.0.0.1', port: 0, appPort: bulkPort, http: false },
            { host: '127.0.0.1', port: 0, appPort, http: true },
          ],
          outbound: [],
        }),
      );
      children.push(server.child);
      const [serverIn, serverBulkIn, serverHttpIn] = server.info.inbound as [number, number, number];
      const target = (port: number): Record<string, unknown> => ({ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${port}`, spiffeId: 'spiffe://bench.local/ns/bench/sa/server' } });
      const client = await startJsonChild(
        process.execPath,
        [...sidecarNodeArgs(), join(__dirname, 'dataplane', 'bench-sidecar.js')],
        JSON.stringify({ keyPem: clientLeaf.key.keyPem, chainPem: clientLeaf.chainPem, rootsPem: [ca.root.pem], dataPath, inbound: [], outbound: [target(serverIn), target(serverBulkIn), target(serverHttpIn)] }),
      );
      children.push(client.child);
      return { server: server.child, client: client.child, dataPath: String(server.info.dataPath), serverIn, out: client.info.outbound as [number, number, number] };
    };
    const pair = await startPair('auto');
    const nodePair = pair.dataPath === 'native' ? await startPair('node') : undefined;
    const { server: serverChild, client: clientChild, serverIn } = pair;
    const [clientOut, clientBulkOut, clientHttpOut] = pair.out;
    await new Promise((r) => setTimeout(r, 500));
    const idle = { server: rssMb(serverChild.pid), client: rssMb(clientChild.pid) };

    // The haproxy pair, configured the same way (TCP mode, mTLS verified against the same root).
    let haproxyPort: number | undefined;
    const haproxyPids: Array<number | undefined> = [];
    let haproxyBulkPort: number | undefined;
    let haproxyServerPort: number | undefined;
    const haproxyBin = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).stdout.trim();
    if (haproxyBin === '') {
      notes.push('haproxy not installed (apt-get install -y haproxy): haproxy pair skipped');
    } else {
      const f = (n: string): string => join(tmp.dir, n);
      writeFileSync(f('root.pem'), ca.root.pem);
      writeFileSync(f('server.pem'), serverLeaf.chainPem + serverLeaf.key.keyPem, { mode: 0o600 });
      writeFileSync(f('client.pem'), clientLeaf.chainPem + clientLeaf.key.keyPem, { mode: 0o600 });
      const hServer = await freePort();
      const hServerBulk = await freePort();
      haproxyPort = await freePort();
      haproxyBulkPort = await freePort();
      haproxyServerPort = hServer;
      const common = 'global\n  nbthread 1\n  maxconn 4096\n  tune.ssl.default-dh-param 2048\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n';
      writeFileSync(f('server.cfg'), `${common}frontend fe\n  bind 127.0.0.1:${hServer} ssl crt ${f('server.pem')} ca-file ${f('root.pem')} verify required ssl-min-ver TLSv1.2\n  default_backend app\nbackend app\n  server app 127.0.0.1:${appPort}\n` +
        `frontend feb\n  bind 127.0.0.1:${hServerBulk} ssl crt ${f('server.pem')} ca-file ${f('root.pem')} verify required ssl-min-ver TLSv1.2\n  default_backend bulk\nbackend bulk\n  server bulk 127.0.0.1:${bulkPort}\n`);
      writeFileSync(f('client.cfg'), `${common}frontend fe\n  bind 127.0.0.1:${haproxyPort}\n  default_backend up\nbackend up\n  server s 127.0.0.1:${hServer} ssl crt ${f('client.pem')} ca-file ${f('root.pem')} verify required ssl-min-ver TLSv1.2\n` +
        `frontend feb\n  bind 127.0.0.1:${haproxyBulkPort}\n  default_backend upb\nbackend upb\n  server s 127.0.0.1:${hServerBulk} ssl crt ${f('client.pem')} ca-file ${f('root.pem')} verify required ssl-min-ver TLSv1.2\n`);
      for (const cfg of ['server.cfg', 'client.cfg']) {
        const h = spawn(haproxyBin, ['-db', '-f', f(cfg)], { stdio: ['ignore', 'ignore', 'inherit'] });
        children.push(h);
        haproxyPids.push(h.pid);
      }
      await new Promise((r) => setTimeout(r, 700));
    }

    const paths: LoadPath[] = [
      { port: appPort, pids: [] },
      { port: clientOut, pids: [serverChild.pid, clientChild.pid] },
      // The same pair with the server's /http listener: per-request authorization and XFCC.
      { port: clientHttpOut, pids: [serverChild.pid, clientChild.pid] },
      ...(haproxyPort !== undefined ? [{ port: haproxyPort, pids: haproxyPids }] : []),
      ...(nodePair ? [{ port: nodePair.out[0], pids: [nodePair.server.pid, nodePair.client.pid] }] : []),
    ];
    const results = await loadInterleaved(paths, seconds, connections);
    const [direct, trellis, trellisHttp] = results as [LoadResult, LoadResult, LoadResult];
    const haproxy = haproxyPort !== undefined ? results[3]! : null;
    const trellisNodePath = nodePair ? results[results.length - 1]! : null;
    const loaded = { server: rssMb(serverChild.pid), client: rssMb(clientChild.pid) };

    // Bulk: one cold run per path (reported as is), then `bulkRuns` interleaved
    // runs whose median is the figure. A single sample was biased against the
    // sidecar: its first large transfer also pays the JIT for the bulk-sized
    // path (haproxy has nothing to warm up), and on a shared machine one sample
    // is at the mercy of one load spike.
    const bulkPaths = [clientBulkOut, bulkPort, ...(haproxyBulkPort !== undefined ? [haproxyBulkPort] : []), ...(nodePair ? [nodePair.out[1]] : [])];
    const cold: number[] = [];
    for (const port of bulkPaths) cold.push(await bulk(port));
    const bulkRuns: number[][] = bulkPaths.map(() => []);
    for (let r = 0; r < 3; r++) for (let i = 0; i < bulkPaths.length; i++) bulkRuns[i]!.push(await bulk(bulkPaths[i]!));
    const bulkMbS = median(bulkRuns[0]!);
    const bulkDirect = median(bulkRuns[1]!);
    const bulkHaproxy = haproxyBulkPort !== undefined ? median(bulkRuns[2]!) : null;
    const bulkNodePath = nodePair ? median(bulkRuns[bulkRuns.length - 1]!) : null;
    const clientCreds = { key: clientLeaf.key.keyPem, cert: clientLeaf.chainPem, ca: ca.root.pem };
    const hps = await handshakesPerSecond(serverIn, clientCreds, 3);
    const hpsHaproxy = haproxyServerPort !== undefined ? await handshakesPerSecond(haproxyServerPort, clientCreds, 3) : null;
    // The same with the client offering X25519 alone: Debian's haproxy (OpenSSL 3.0) cannot do the post-quantum hybrid
    // the sidecar picks by default (X25519MLKEM768), so this pair compares the same key exchange.
    const hpsX25519 = await handshakesPerSecond(serverIn, clientCreds, 3, 'X25519');
    const hpsHaproxyX25519 = haproxyServerPort !== undefined ? await handshakesPerSecond(haproxyServerPort, clientCreds, 3, 'X25519') : null;

    // The real `trellis sidecar` binary, idle (no control plane reachable): what a pod pays.
    let binaryIdle = NaN;
    {
      writeFileSync(join(tmp.dir, 'root-bootstrap.pem'), ca.root.pem);
      writeFileSync(join(tmp.dir, 'token'), 'unused\n');
      const deadPort = await freePort();
      const bin = trellisSpawn(['sidecar', '--control-plane', `127.0.0.1:${deadPort}`, '--ca-bundle', join(tmp.dir, 'root-bootstrap.pem'), '--token-file', join(tmp.dir, 'token'),
        '--namespace', 'bench', '--service', 'bench', '--inbound', `127.0.0.1:0=${appPort}`, '--admin', '127.0.0.1:0', '--log-level', 'error']);
      children.push(bin);
      await new Promise((r) => setTimeout(r, 2500));
      binaryIdle = rssMb(bin.pid);
    }

    // The real binary again, this time with a real control plane that pushed it 20 AuthorizationPolicies (issue 15).
    const withPolicies = await measureIdleRssWithPolicies({ policyCount: 20 });

    return {
      data_path: pair.dataPath,
      direct,
      trellis,
      haproxy,
      trellis_node_path: trellisNodePath ? { ...trellisNodePath, bulk_mb_s: bulkNodePath } : null,
      trellis_http_port: trellisHttp,
      rps_ratio_vs_haproxy: haproxy ? Math.round((trellis.rps / haproxy.rps) * 100) / 100 : null,
      p99_ratio_vs_haproxy: haproxy && haproxy.p99_ms > 0 ? Math.round((trellis.p99_ms / haproxy.p99_ms) * 100) / 100 : null,
      cpu_per_request_ratio_vs_haproxy:
        haproxy?.proxy_cpu_ms_per_1k_req && trellis.proxy_cpu_ms_per_1k_req ? Math.round((trellis.proxy_cpu_ms_per_1k_req / haproxy.proxy_cpu_ms_per_1k_req) * 100) / 100 : null,
      bulk_mb_s: bulkMbS,
      handshakes_per_s: hps,
      handshakes_per_s_x25519: hpsX25519,
      bulk_mb_s_cold: cold[0],
      reference: { bulk_mb_s_direct: bulkDirect, bulk_mb_s_haproxy: bulkHaproxy, bulk_mb_s_haproxy_cold: cold[2] ?? null, handshakes_per_s_haproxy: hpsHaproxy, handshakes_per_s_haproxy_x25519: hpsHaproxyX25519 },
      idle_rss_mb: Math.max(idle.server, idle.client),
      rss_mb: { idle, loaded, trellis_binary_idle: binaryIdle },
      rss_idle_with_policies_mb: withPolicies.idle_after_push_mb,
      rss_with_policies_after_traffic_mb: withPolicies.after_traffic_mb,
      // The idle figure by kind: node binary pages (shared by every sidecar on a node) and each sidecar's own.
      rss_idle_with_policies_by_kind_mb: withPolicies.idle_breakdown_mb,
      // What the node binary alone holds: an empty process, with one TLS context, and with node:http and node:http2 too.
      rss_runtime_floor_mb: runtimeFloorMb(),
      load: { tool: 'autocannon', connections, seconds, mode: 'tcp' },
      l7: await l7(),
      ...(notes.length ? { notes } : {}),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    tmp.cleanup();
  }
}
