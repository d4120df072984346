/**
 * The simulated sidecar fleet the control-plane benchmarks share: Kubernetes
 * ServiceAccount tokens for namespace `bench` signed by a key of our own (the
 * control plane reads its public half with `--k8s-issuer BENCH_ISSUER
 * --k8s-jwks FILE`), and simulator processes (control-plane-simulator.js),
 * each running a slice of the fleet with the real discovery client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { createInterface } from 'node:readline';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/** The benchmarks' trust domain. */
export const BENCH_TD = 'bench.example';
/** The issuer of the benchmarks' ServiceAccount tokens. */
export const BENCH_ISSUER = 'https://kubernetes.default.svc';

/**
 * Writes the public key (JWKS) to `jwksFile` and returns one token per
 * ServiceAccount `sa-0` .. `sa-(accounts-1)` of namespace `bench`, valid for an hour.
 */
export async function mintBenchTokens(jwksFile: string, accounts: number): Promise<string[]> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
  const now = Math.floor(Date.now() / 1000);
  const tokens: string[] = [];
  for (let i = 0; i < accounts; i++) {
    tokens.push(
      await new SignJWT({ 'kubernetes.io': { namespace: 'bench', serviceaccount: { name: `sa-${i}`, uid: `uid-${i}` }, pod: { name: `pod-${i}`, uid: `pod-uid-${i}` } } })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(BENCH_ISSUER)
        .setSubject(`system:serviceaccount:bench:sa-${i}`)
        .setAudience('trellis')
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .sign(privateKey),
    );
  }
  return tokens;
}

/** GETs a public path (/readyz, /metrics) of the admin HTTPS port, trusting the mesh roots in `caPem`. */
export function publicGet(adminPort: number, path: string, caPem: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: adminPort, path, agent: false, ca: caPem, checkServerIdentity: () => undefined }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Simulator processes sharing a fleet of `n` sidecars. */
export interface Fleet {
  /** Starts every sidecar of every slice at once; returns the Date.now() it did. */
  go(): number;
  /** Every slice's JSON line of `phase`. */
  all(phase: string): Promise<Array<Record<string, unknown>>>;
  send(msg: unknown): void;
  stop(): Promise<void>;
}

/** Spawns `procs` simulators with consecutive slices of `n` and waits until each has made its keys. */
export async function startFleet(procs: number, n: number, base: Record<string, unknown>): Promise<Fleet> {
  const sims: Array<{ child: ChildProcess; next: (phase: string) => Promise<Record<string, any>> }> = [];
  for (let p = 0; p < procs; p++) {
    const first = Math.floor((p * n) / procs);
    const count = Math.floor(((p + 1) * n) / procs) - first;
    // BENCH_SIM_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=DIR") profiles the simulators.
    const simArgs = (process.env.BENCH_SIM_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...simArgs, '--max-old-space-size=8192', join(__dirname, 'control-plane-simulator.js'), JSON.stringify({ ...base, first, sidecars: count })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    sims.push({ child, next: phases(child) });
  }
  await Promise.all(sims.map((s) => s.next('ready')));
  const send = (msg: unknown): void => {
    for (const s of sims) s.child.stdin!.write(JSON.stringify(msg) + '\n');
  };
  return {
    go: () => {
      const at = Date.now();
      send({ go: true });
      return at;
    },
    all: (phase) => Promise.all(sims.map((s) => s.next(phase))),
    send,
    stop: async () => {
      send({ stop: true });
      await Promise.all(sims.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once('exit', r)) : undefined)));
    },
  };
}

/** Waits for the simulator's JSON line of a given phase. */
function phases(sim: ChildProcess): (phase: string) => Promise<Record<string, any>> {
  const lines = createInterface({ input: sim.stdout! });
  return (phase) =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`simulator exited ${code} before ${phase}`));
      const onLine = (l: string): void => {
        const m = JSON.parse(l) as Record<string, any> & { phase: string };
        if (m.phase === phase) {
          lines.off('line', onLine);
          sim.off('exit', onExit);
          resolve(m);
        }
      };
      lines.on('line', onLine);
      sim.once('exit', onExit);
    });
}
