/**
 * `npm run bench -- control-plane [--sidecars N]`: N simulated sidecars (a
 * separate process, control-plane-simulator.js) connect at once to a real
 * `trellis control-plane` and each obtains an SVID; then one policy change
 * must reach all of them. Reports the time until all are certified, the
 * stream errors seen before retries succeeded, the control plane's peak RSS
 * and RSS per connected stream, and the policy convergence p50/p99.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { freePort, makeTmpDir, TRELLIS_BIN, trellisSync } from '@trellis/testkit';
import { stringFlag } from './bench-flags';

const TD = 'bench.example';
const ISSUER = 'https://kubernetes.default.svc';

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Runs the benchmark; see the module comment. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const n = Number(process.env.BENCH_SIDECARS ?? stringFlag(flags, 'sidecars') ?? 10_000);
  const tmp = makeTmpDir('trellis-bench-cp-');
  try {
    const caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    const init = trellisSync(['ca', 'init', '--dir', caDir, '--trust-domain', TD]);
    if (init.status !== 0) throw new Error(init.stderr);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    writeFileSync(join(tmp.dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
    const accounts = Math.min(100, n);
    const now = Math.floor(Date.now() / 1000);
    const tokens: string[] = [];
    for (let i = 0; i < accounts; i++) {
      tokens.push(
        await new SignJWT({ 'kubernetes.io': { namespace: 'bench', serviceaccount: { name: `sa-${i}`, uid: `uid-${i}` }, pod: { name: `pod-${i}`, uid: `pod-uid-${i}` } } })
          .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
          .setIssuer(ISSUER)
          .setSubject(`system:serviceaccount:bench:sa-${i}`)
          .setAudience('trellis')
          .setIssuedAt(now)
          .setExpirationTime(now + 3600)
          .sign(privateKey),
      );
    }
    const port = await freePort();
    const adminPort = await freePort();
    // BENCH_CP_NODE_ARGS (e.g. "--cpu-prof") profiles the control plane process.
    const nodeArgs = (process.env.BENCH_CP_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const cp = spawn(
      process.execPath,
      [...nodeArgs, TRELLIS_BIN, 'control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`,
        '--k8s-issuer', ISSUER, '--k8s-jwks', join(tmp.dir, 'jwks.json'), '--log-level', 'warn'],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: tmp.dir },
    );
    let cpErr = '';
    cp.stderr!.on('data', (d: Buffer) => {
      cpErr = (cpErr + d.toString()).slice(-4000);
    });
    // Ready when the admin port answers.
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).ok) break;
      } catch {
        /* not yet */
      }
      if (i > 300 || cp.exitCode !== null) throw new Error(`control plane did not start: ${cpErr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const baselineMb = rssMb(cp.pid!, 'VmRSS');

    const sim = spawn(process.execPath, ['--max-old-space-size=8192', join(__dirname, 'control-plane-simulator.js'), JSON.stringify({
      addresses: [`127.0.0.1:${port}`],
      rootPem: readFileSync(join(caDir, 'root.pem'), 'utf8'),
      controlPlaneSpiffeId: `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`,
      sidecars: n,
      tokens,
      trustDomain: TD,
    })], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: sim.stdout! });
    const next = (phase: string): Promise<Record<string, any>> =>
      new Promise((resolve, reject) => {
        const onLine = (l: string): void => {
          const m = JSON.parse(l) as Record<string, any> & { phase: string };
          if (m.phase === phase) {
            lines.off('line', onLine);
            resolve(m);
          }
        };
        lines.on('line', onLine);
        sim.once('exit', (code) => reject(new Error(`simulator exited ${code} before ${phase}`)));
      });

    const certified = await next('certified');
    const connectedMb = rssMb(cp.pid!, 'VmRSS');
    const cpCpuCertified = cpuSeconds(cp.pid!);
    const converged = next('converged');
    const writtenAt = Date.now();
    writeFileSync(join(policyDir, 'bench.yaml'), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bench-allow
  namespace: bench
spec:
  selector:
    matchLabels:
      app: bench
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/bench/sa/sa-0"]
`);
    sim.stdin!.write(JSON.stringify({ policyWrittenAt: writtenAt }) + '\n');
    const conv = await converged;
    const peakMb = rssMb(cp.pid!, 'VmHWM');
    sim.stdin!.write(JSON.stringify({ stop: true }) + '\n');
    await new Promise((r) => sim.once('exit', r));
    cp.kill('SIGTERM');
    await new Promise((r) => cp.once('exit', r));
    return {
      sidecars: n,
      all_certified_s: Math.round(certified.all_certified_ms!) / 1000,
      errors: certified.errors,
      errors_by_code: certified.errors_by_code,
      control_plane_cpu_s: cpCpuCertified,
      simulator_cpu_s: certified.sim_cpu_s,
      peak_rss_mb: Math.round(peakMb),
      kb_per_stream: Math.round(((connectedMb - baselineMb) * 1024) / n),
      converge_p50_ms: conv.converge_p50_ms,
      converge_p99_ms: conv.converge_p99_ms,
      note: 'convergence includes the policy store debounce (100 ms) and the push debounce (100 ms)',
    };
  } finally {
    if (process.env.BENCH_CP_NODE_ARGS) process.stderr.write(`bench: control-plane profile left in ${tmp.dir}\n`);
    else tmp.cleanup();
  }
}
