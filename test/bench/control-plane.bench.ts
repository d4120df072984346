/**
 * `npm run bench -- control-plane [--sidecars N]`: N simulated sidecars (a
 * separate process, control-plane-simulator.js) connect at once to a real
 * `trellis control-plane` and each obtains an SVID; then one policy change
 * must reach all of them. Reports the time until all are certified, the
 * stream errors seen before retries succeeded, the control plane's peak RSS
 * and RSS per connected stream, and the policy convergence p50/p99.
 *
 * In the same run, `reference` measures the platform floor: a bare grpc-js
 * TLS server (bare-grpc-server.js, a certificate from the same CA) driven
 * with the same connection pattern and the same client transport the
 * sidecars use (node:http2), so the ratios say how much of the cost is ours
 * and how much is Node + grpc-js + TLS on this machine.
 * `--reference=false` skips it.
 *
 * The fleet runs in `--sim-procs` simulator processes (default: one per core),
 * each with a slice of the sidecars, all started at once after they have
 * made their keys.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadCertificateAuthority } from '@trellis/control-plane';
import { buildWorkloadCsr } from '@trellis/shared';
import { freePort, makeTmpDir, TRELLIS_BIN, trellisSync } from '@trellis/testkit';
import { stringFlag } from './bench-flags';
import { BENCH_ISSUER, BENCH_TD, mintBenchTokens, publicGet, startFleet } from './simulated-fleet';

const TD = BENCH_TD;
const ISSUER = BENCH_ISSUER;

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Asks the control plane for a heap snapshot (written into `dir`) and waits until it is complete. */
async function heapSnapshot(server: ChildProcess, dir: string): Promise<void> {
  const files = (): string[] => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
  const before = files().length;
  server.kill('SIGUSR2');
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 600 && files().length === before; i++) await sleep(100);
  // Written in one go by the blocked process: done once its size holds still.
  const newest = join(dir, files().sort().pop()!);
  for (let last = -1, i = 0; i < 600; i++, await sleep(500)) {
    const size = statSync(newest).size;
    if (size === last && size > 0) break;
    last = size;
  }
}

/** True when BENCH_CP_NODE_ARGS asks for heap snapshots. */
function wantsHeapSnapshot(): boolean {
  return /--heapsnapshot-signal=SIGUSR2/.test(process.env.BENCH_CP_NODE_ARGS ?? '');
}

/** trellis_discovery_pushes_total{type="authz"} from the control plane's metrics. */
async function authzPushes(adminPort: number, caPem: string): Promise<number> {
  const text = (await publicGet(adminPort, '/metrics', caPem)).body;
  const line = text.split('\n').find((l) => l.startsWith('trellis_discovery_pushes_total{type="authz"} '));
  return line ? Number(line.split(' ').pop()) : 0;
}

function mergeCounts(parts: Array<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * The platform floor: N clients (the sidecar's node:http2 transport) against bare-grpc-server.js
 * (a P-256 certificate issued by the bench CA), connecting at once, one
 * stream each, one request and one response, streams then held open.
 */
async function reference(dir: string, caDir: string, n: number, procs: number, tokens: string[]): Promise<{ bare_grpc_all_connected_s: number; bare_kb_per_stream: number; bare_cpu_s: number; bare_client_cpu_s: number; bare_errors: number }> {
  const spiffeId = `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ca = await loadCertificateAuthority(caDir);
  const issued = await ca.issue({ csr: buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, spiffeId), spiffeId, ttlSeconds: 3600, requester: 'bench' });
  const files = { certFile: join(dir, 'bare-chain.pem'), keyFile: join(dir, 'bare-key.pem'), caFile: join(caDir, 'root.pem') };
  writeFileSync(files.certFile, issued.chainPem);
  writeFileSync(files.keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  // The profiling flags apply to both servers (profiles land in `dir`).
  const nodeArgs = (process.env.BENCH_CP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const server = spawn(process.execPath, [...nodeArgs, join(__dirname, 'bare-grpc-server.js'), JSON.stringify({ ...files, responseBytes: 2048 })], { stdio: ['ignore', 'pipe', 'inherit'], cwd: dir });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', (l) => resolve((JSON.parse(l) as { port: number }).port));
      server.once('exit', (code) => reject(new Error(`bare grpc server exited ${code}`)));
    });
    await new Promise((r) => setTimeout(r, 200));
    const baselineMb = rssMb(server.pid!, 'VmRSS');
    const cpuBefore = cpuSeconds(server.pid!);
    const fleet = await startFleet(procs, n, {
      mode: 'bare',
      addresses: [`127.0.0.1:${port}`],
      rootPem: readFileSync(join(caDir, 'root.pem'), 'utf8'),
      controlPlaneSpiffeId: spiffeId,
      tokens,
      trustDomain: TD,
    });
    const goAt = fleet.go();
    const parts = await fleet.all('connected');
    const connectedMb = rssMb(server.pid!, 'VmRSS');
    const cpu = cpuSeconds(server.pid!) - cpuBefore;
    if (wantsHeapSnapshot()) await heapSnapshot(server, dir);
    await fleet.stop();
    const connected = {
      all_connected_ms: Math.max(...parts.map((c) => c.at as number)) - goAt,
      errors: parts.reduce((a, c) => a + (c.errors as number), 0),
      sim_cpu_s: round2(parts.reduce((a, c) => a + (c.sim_cpu_s as number), 0)),
    };
    return {
      bare_grpc_all_connected_s: Math.round(connected.all_connected_ms!) / 1000,
      bare_kb_per_stream: Math.round(((connectedMb - baselineMb) * 1024) / n),
      bare_cpu_s: Math.round(cpu * 100) / 100,
      bare_client_cpu_s: connected.sim_cpu_s,
      bare_errors: connected.errors,
    };
  } finally {
    server.kill('SIGTERM');
  }
}

/** Runs the benchmark; see the module comment. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const n = Number(process.env.BENCH_SIDECARS ?? stringFlag(flags, 'sidecars') ?? 10_000);
  // Simulator processes, each with a slice of the fleet; default: one per core.
  const procs = Math.max(1, Math.min(n, Number(stringFlag(flags, 'sim-procs') ?? availableParallelism())));
  const tmp = makeTmpDir('trellis-bench-cp-');
  try {
    const caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    const init = trellisSync(['ca', 'init', '--dir', caDir, '--trust-domain', TD]);
    if (init.status !== 0) throw new Error(init.stderr);
    const accounts = Math.min(100, n);
    const tokens = await mintBenchTokens(join(tmp.dir, 'jwks.json'), accounts);
    const port = await freePort();
    const adminPort = await freePort();
    // BENCH_CP_NODE_ARGS (e.g. "--cpu-prof") profiles the control plane process; with
    // "--heapsnapshot-signal=SIGUSR2" the bench takes a heap snapshot once all are certified.
    const nodeArgs = (process.env.BENCH_CP_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const cp = spawn(
      process.execPath,
      [...nodeArgs, TRELLIS_BIN, 'control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`,
        '--k8s-issuer', ISSUER, '--k8s-jwks', join(tmp.dir, 'jwks.json'), '--log-level', 'warn',
        // Sidecars share `accounts` ServiceAccounts, as replicas of a Deployment do: the per-identity stream cap must cover them.
        '--max-streams-per-identity', String(Math.ceil(n / accounts) + 1)],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: tmp.dir },
    );
    let cpErr = '';
    cp.stderr!.on('data', (d: Buffer) => {
      cpErr = (cpErr + d.toString()).slice(-4000);
    });
    // Ready when the admin port answers.
    for (let i = 0; ; i++) {
      try {
        if ((await publicGet(adminPort, '/readyz', readFileSync(join(caDir, 'root.pem'), 'utf8'))).status === 200) break;
      } catch {
        /* not yet */
      }
      if (i > 300 || cp.exitCode !== null) throw new Error(`control plane did not start: ${cpErr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const baselineMb = rssMb(cp.pid!, 'VmRSS');
    const cpCpuStartup = cpuSeconds(cp.pid!);

    const fleet = await startFleet(procs, n, {
      mode: 'trellis',
      addresses: [`127.0.0.1:${port}`],
      rootPem: readFileSync(join(caDir, 'root.pem'), 'utf8'),
      controlPlaneSpiffeId: `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`,
      tokens,
      trustDomain: TD,
    });
    const goAt = fleet.go();
    const certifiedParts = await fleet.all('certified');
    const certified = {
      all_certified_ms: Math.max(...certifiedParts.map((c) => c.at as number)) - goAt,
      errors: certifiedParts.reduce((a, c) => a + (c.errors as number), 0),
      errors_by_code: mergeCounts(certifiedParts.map((c) => c.errors_by_code as Record<string, number>)),
      sim_cpu_s: round2(certifiedParts.reduce((a, c) => a + (c.sim_cpu_s as number), 0)),
    };
    const connectedMb = rssMb(cp.pid!, 'VmRSS');
    const cpCpuCertified = cpuSeconds(cp.pid!);
    if (wantsHeapSnapshot()) await heapSnapshot(cp, tmp.dir);
    const converged = fleet.all('converged');
    const authzPushesBefore = await authzPushes(adminPort, readFileSync(join(caDir, 'root.pem'), 'utf8'));
    const writtenAt = Date.now();
    writeFileSync(join(policyDir, 'bench.yaml'), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bench-allow
  namespace: bench
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/bench/sa/sa-0"]
`);
    fleet.send({ policyWrittenAt: writtenAt });
    // The server's side of convergence: when the control plane has sent the new version to every sidecar.
    let allSentMs: number | null = null;
    while (allSentMs === null && Date.now() - writtenAt < 60_000) {
      if ((await authzPushes(adminPort, readFileSync(join(caDir, 'root.pem'), 'utf8'))) >= authzPushesBefore + n) allSentMs = Date.now() - writtenAt;
      else await new Promise((r) => setTimeout(r, 25));
    }
    const lat = (await converged).flatMap((c) => (c.accepted_at as number[]).map((t) => t - writtenAt)).sort((a, b) => a - b);
    const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
    const conv = { converge_p50_ms: q(0.5), converge_p99_ms: q(0.99), converge_all_sent_ms: allSentMs };
    const peakMb = rssMb(cp.pid!, 'VmHWM');
    await fleet.stop();
    cp.kill('SIGTERM');
    await new Promise((r) => cp.once('exit', r));
    const ref = stringFlag(flags, 'reference') === 'false' ? null : await reference(tmp.dir, caDir, n, procs, tokens);
    const certifiedS = Math.round(certified.all_certified_ms!) / 1000;
    const kbPerStream = Math.round(((connectedMb - baselineMb) * 1024) / n);
    return {
      sidecars: n,
      simulator_processes: procs,
      all_certified_s: certifiedS,
      errors: certified.errors,
      errors_by_code: certified.errors_by_code,
      control_plane_cpu_s: cpCpuCertified,
      control_plane_startup_cpu_s: cpCpuStartup,
      simulator_cpu_s: certified.sim_cpu_s,
      peak_rss_mb: Math.round(peakMb),
      kb_per_stream: kbPerStream,
      converge_p50_ms: conv.converge_p50_ms,
      converge_p99_ms: conv.converge_p99_ms,
      converge_all_sent_ms: conv.converge_all_sent_ms,
      ...(ref
        ? {
            reference: ref,
            // CPU per sidecar (per connection for the reference), after startup: the figures that decide what N fits in a time on a core.
            cpu_ms_per_sidecar: {
              control_plane: round2(((cpCpuCertified - cpCpuStartup) * 1000) / n),
              simulator: round2((certified.sim_cpu_s * 1000) / n),
              bare_server: round2((ref.bare_cpu_s * 1000) / n),
              bare_client: round2((ref.bare_client_cpu_s * 1000) / n),
            },
            ratio_to_reference: {
              all_connected: round2(certifiedS / ref.bare_grpc_all_connected_s),
              kb_per_stream: round2(kbPerStream / ref.bare_kb_per_stream),
              // Both after startup: the control plane's CPU from ready to all certified, the bare server's from listening to all answered.
              server_cpu: round2((cpCpuCertified - cpCpuStartup) / ref.bare_cpu_s),
            },
          }
        : {}),
      note: 'convergence includes the policy store debounce (100 ms) and the push debounce (100 ms); converge_all_sent_ms is when the control plane had sent the change to every sidecar (from its metrics); simulator keys and CSRs are made before the clock starts',
    };
  } finally {
    if (process.env.BENCH_CP_NODE_ARGS) process.stderr.write(`bench: control-plane profile left in ${tmp.dir}\n`);
    else tmp.cleanup();
  }
}
