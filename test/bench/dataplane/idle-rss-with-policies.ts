/**
 * The resident memory of a real `trellis sidecar` process after a real
 * `trellis control-plane` has pushed it a set of AuthorizationPolicies, with
 * traffic stopped: what issue 15 asks to stay within 50 MB for a 20-policy
 * set. One measurement starts a CA, the control plane (policy dir of one
 * PERMISSIVE PeerAuthentication and `policyCount` AuthorizationPolicies, all
 * selecting the workload), an app and the sidecar (one `/http` inbound port),
 * waits for the sidecar to log that it applied the policies, then reads
 * VmRSS twice: idle after the push, and after a burst of plaintext HTTP
 * requests through the inbound port (evaluated against every policy) once
 * that burst has stopped.
 *
 * `repoRoot` runs another checkout's binary with the same harness, so a
 * before/after comparison measures the same thing (`--repo=DIR` on the
 * `sidecar-rss` benchmark).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { freePort, makeTmpDir, REPO_ROOT } from '@trellis/testkit';
import { memoryMb, rssMb } from './bench-process';

/** What one measurement reports. */
export interface IdleRssWithPolicies {
  /** VmRSS (MB) of the idle sidecar a few seconds after the policy push. */
  readonly idle_after_push_mb: number;
  /** VmRSS (MB) a few seconds after a burst of requests evaluated against the set stopped. */
  readonly after_traffic_mb: number;
  /** The idle RSS by kind (bench-process.ts memoryMb): file-backed pages (the node binary), anonymous, PSS. */
  readonly idle_breakdown_mb: { rss: number; file: number; anon: number; pss: number };
  readonly policies: number;
  readonly requests: number;
}

/** Options of one measurement. */
export interface IdleRssOptions {
  /** AuthorizationPolicies in the pushed set (default 20). */
  policyCount?: number;
  /** Checkout whose `cli/bin/trellis.js` runs (default this one). */
  repoRoot?: string;
  /** Requests of the burst (default 300). */
  requests?: number;
  /** Seconds to wait after the push and after the burst before reading RSS (default 3). */
  settleSeconds?: number;
}

const TD = 'bench.local';

/** `count` AuthorizationPolicies using every field the evaluator knows, all selecting app=bench in namespace bench. */
export function benchPolicySet(count: number): string {
  const docs = [
    `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: trellis-system}\nspec: {mtls: {mode: PERMISSIVE}}\n`,
  ];
  for (let i = 0; i < count; i++) {
    const action = i % 5 === 4 ? 'DENY' : i % 7 === 6 ? 'AUDIT' : 'ALLOW';
    docs.push(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p${String(i).padStart(2, '0')}, namespace: bench, creationTimestamp: "2026-01-01T00:00:${String(i).padStart(2, '0')}Z"}
spec:
  selector: {matchLabels: {app: bench}}
  action: ${action}
  rules:
  - from:
    - source: {principals: ["${TD}/ns/client${i}/sa/*", "${TD}/ns/bench/sa/web"], namespaces: ["bench", "shop-*"]}
    - source: {ipBlocks: ["10.${i}.0.0/16", "fd00:${i}::/32"], notIpBlocks: ["10.${i}.1.0/24"]}
    to:
    - operation: {methods: ["GET", "HEAD"], paths: ["/api/v${i}/*", "/healthz"], hosts: ["bench.bench.svc*", "*.example.org"]}
    - operation: {ports: ["8080"], notPaths: ["/admin*"], notMethods: ["DELETE"]}
  - to:
    - operation: {paths: ["/public/${i}/*"], methods: ["GET"]}
`);
  }
  return docs.join('---\n');
}

function waitForLine(text: () => string, needle: (s: string) => boolean, what: string, ms = 30_000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (needle(text())) return resolve();
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}; last output: ${text().slice(-600)}`));
      setTimeout(tick, 100);
    };
    tick();
  });
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { host: 'bench.bench.svc' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Runs one measurement; every process it starts is killed before it returns. */
export async function measureIdleRssWithPolicies(opts: IdleRssOptions = {}): Promise<IdleRssWithPolicies> {
  const count = opts.policyCount ?? 20;
  const root = opts.repoRoot ?? REPO_ROOT;
  const bin = join(root, 'cli', 'bin', 'trellis.js');
  const settle = (opts.settleSeconds ?? 3) * 1000;
  const tmp = makeTmpDir('trellis-bench-rss-');
  const f = (n: string): string => join(tmp.dir, n);
  const children: ChildProcess[] = [];
  let app: Server | undefined;
  const trellis = (args: string[]): { child: ChildProcess; log: () => string } => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: tmp.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-200_000)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-200_000)));
    children.push(child);
    return { child, log: () => out };
  };
  const sync = (args: string[]): string => {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: tmp.dir });
    if (r.status !== 0) throw new Error(`trellis ${args[0]} failed: ${r.stderr}`);
    return r.stdout;
  };
  try {
    const [cpPort, cpAdmin, inPort, sidecarAdmin] = [await freePort(), await freePort(), await freePort(), await freePort()];
    sync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    const token = sync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', `spiffe://${TD}/ns/bench/sa/bench`, '--service', 'bench', '--labels', 'app=bench', '--ports', String(inPort)]).trim();
    writeFileSync(f('token'), token + '\n', { mode: 0o600 });
    mkdirSync(f('policies'));
    writeFileSync(f('policies/bench.yaml'), benchPolicySet(count));
    writeFileSync(f('revocations.yaml'), 'serials: []\nspiffeIds: []\n');
    app = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => app!.listen(0, '127.0.0.1', () => r()));
    const appPort = (app.address() as { port: number }).port;

    const cp = trellis(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--revocations', f('revocations.yaml'), '--listen', `127.0.0.1:${cpPort}`, '--admin', `127.0.0.1:${cpAdmin}`]);
    await waitForLine(cp.log, (s) => s.includes('control plane ready'), 'the control plane');
    const sidecar = trellis(['sidecar', '--control-plane', `127.0.0.1:${cpPort}`, '--ca-bundle', f('ca/root.pem'), '--token-file', f('token'), '--namespace', 'bench', '--service', 'bench',
      '--service-account', 'bench', '--labels', 'app=bench', '--inbound', `127.0.0.1:${inPort}=${appPort}/http`, '--admin', `127.0.0.1:${sidecarAdmin}`]);
    await waitForLine(sidecar.log, (s) => s.split('\n').some((l) => l.includes('authorization policies applied') && l.includes(`"count":${count}`)), `the sidecar to apply ${count} policies`);
    await new Promise((r) => setTimeout(r, settle));
    const idle = rssMb(sidecar.child.pid);
    const breakdown = memoryMb(sidecar.child.pid);

    const n = opts.requests ?? 300;
    const statuses = new Map<number, number>();
    for (let i = 0; i < n; i += 10) {
      const batch = await Promise.all(Array.from({ length: 10 }, (_, j) => get(inPort, (i + j) % 2 === 0 ? `/public/${(i + j) % count}/x` : `/api/v1/items?i=${i + j}`)));
      for (const s of batch) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    if (!statuses.has(200) || (count > 0 && !statuses.has(403))) throw new Error(`the burst should see both allowed and denied requests, saw ${JSON.stringify([...statuses])}`);
    await new Promise((r) => setTimeout(r, settle));
    const after = rssMb(sidecar.child.pid);
    return { idle_after_push_mb: idle, after_traffic_mb: after, idle_breakdown_mb: breakdown, policies: count, requests: n };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
    tmp.cleanup();
  }
}
