/**
 * `npm run bench -- policy-crd [--sidecars 200] [--rounds 5]`: the time from
 * writing an AuthorizationPolicy object to the API server (a create, then
 * edits, as `kubectl apply` sends them) to every affected sidecar ACKing the
 * change, on a real kube-apiserver (the testkit's, 1.20) and a real `trellis
 * control-plane` reading the CRDs with `--kubeconfig`. N simulated sidecars
 * (control-plane-simulator.js: the real discovery client, one TLS connection
 * each) in namespace `bench` are all selected by the policy. Each round arms
 * the simulators (each takes its current authz version as the baseline),
 * then writes; a sidecar's latency is when it accepted (and so ACKed) a
 * version other than its baseline, minus the instant before the API request
 * was sent. Prints p50/p99/max over every sidecar of every round, per round,
 * and the API write's own round trip.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeClient } from '@trellis/kubernetes';
import { REPO_ROOT, freePort, makeTmpDir, startKubeApiServer, TRELLIS_BIN, trellisSync, waitFor } from '@trellis/testkit';
import { numberFlag } from './bench-flags';
import { BENCH_ISSUER, BENCH_TD, mintBenchTokens, publicGet, startFleet } from './simulated-fleet';

const policy = (round: number): Record<string, unknown> => ({
  apiVersion: 'security.trellis.dev/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'bench-allow', namespace: 'bench' },
  spec: { action: 'ALLOW', rules: [{ from: [{ source: { principals: [`${BENCH_TD}/ns/bench/sa/sa-${round}`] } }] }] },
});

function quantile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Runs the benchmark; see the module comment. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const n = numberFlag(flags, 'sidecars', 200);
  const rounds = numberFlag(flags, 'rounds', 5);
  const procs = Math.max(1, Math.min(n, numberFlag(flags, 'sim-procs', availableParallelism())));
  const tmp = makeTmpDir('trellis-bench-policy-crd-');
  const k8s = await startKubeApiServer({ noControllerManager: true });
  let cp: ReturnType<typeof spawn> | undefined;
  try {
    k8s.kubectlOk(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    k8s.kubectlOk(['create', 'namespace', 'bench']);
    k8s.kubectlOk(['create', 'namespace', 'trellis-system']);
    await waitFor('the CRDs', () => k8s.kubectl(['wait', '--for=condition=Established', '--timeout=1s', 'crd', '--all']).status === 0, 20_000, 200);
    const caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    const init = trellisSync(['ca', 'init', '--dir', caDir, '--trust-domain', BENCH_TD]);
    if (init.status !== 0) throw new Error(init.stderr);
    const accounts = Math.min(100, n);
    const tokens = await mintBenchTokens(join(tmp.dir, 'jwks.json'), accounts);
    const port = await freePort();
    const adminPort = await freePort();
    cp = spawn(
      process.execPath,
      [TRELLIS_BIN, 'control-plane', '--ca-dir', caDir, '--policy-dir', policyDir, '--kubeconfig', k8s.kubeconfig, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`,
        '--k8s-issuer', BENCH_ISSUER, '--k8s-jwks', join(tmp.dir, 'jwks.json'), '--log-level', 'warn', '--max-streams-per-identity', String(Math.ceil(n / accounts) + 1)],
      { stdio: ['ignore', 'ignore', 'pipe'], cwd: tmp.dir },
    );
    let cpErr = '';
    cp.stderr!.on('data', (d: Buffer) => {
      cpErr = (cpErr + d.toString()).slice(-4000);
    });
    const rootPem = readFileSync(join(caDir, 'root.pem'), 'utf8');
    await waitFor('the control plane to be ready', async () => {
      if (cp!.exitCode !== null) throw new Error(`control plane exited: ${cpErr}`);
      return (await publicGet(adminPort, '/readyz', rootPem)).status === 200;
    }, 30_000, 50);

    const fleet = await startFleet(procs, n, {
      mode: 'trellis',
      addresses: [`127.0.0.1:${port}`],
      rootPem,
      controlPlaneSpiffeId: `spiffe://${BENCH_TD}/ns/trellis-system/sa/trellis-control-plane`,
      tokens,
      trustDomain: BENCH_TD,
    });
    const certified = fleet.all('certified');
    fleet.go();
    await certified;

    const client = await KubeClient.connect({ kubeconfig: k8s.kubeconfig });
    const all: number[] = [];
    const perRound: Array<{ round: number; write: string; api_ms: number; p50_ms: number; p99_ms: number; max_ms: number }> = [];
    const path = '/apis/security.trellis.dev/v1/namespaces/bench/authorizationpolicies';
    for (let round = 0; round < rounds; round++) {
      const armed = fleet.all('armed');
      fleet.send({ arm: true });
      await armed;
      const converged = fleet.all('converged');
      const writtenAt = Date.now();
      if (round === 0) await client.create(path, policy(round));
      else await client.apply(`${path}/bench-allow`, policy(round), 'bench');
      const apiMs = Date.now() - writtenAt;
      const lat = (await converged).flatMap((c) => (c.accepted_at as number[]).map((t) => t - writtenAt)).sort((a, b) => a - b);
      all.push(...lat);
      perRound.push({ round, write: round === 0 ? 'create' : 'apply', api_ms: apiMs, p50_ms: quantile(lat, 0.5), p99_ms: quantile(lat, 0.99), max_ms: lat[lat.length - 1]! });
    }
    await fleet.stop();
    all.sort((a, b) => a - b);
    return {
      sidecars: n,
      rounds,
      simulator_processes: procs,
      kube_apiserver: k8s.version,
      apply_to_all_acked_p50_ms: quantile(all, 0.5),
      apply_to_all_acked_p99_ms: quantile(all, 0.99),
      apply_to_all_acked_max_ms: all[all.length - 1],
      per_round: perRound,
      note: 'from the instant before the API request to each sidecar ACKing the new authz version; includes the API server write and watch delivery, and the control plane push debounce (100 ms); simulators and server share this machine',
    };
  } finally {
    cp?.kill('SIGTERM');
    if (cp && cp.exitCode === null) await new Promise((r) => cp!.once('exit', r));
    await k8s.stop();
    tmp.cleanup();
  }
}
