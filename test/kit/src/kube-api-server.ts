/**
 * A real Kubernetes API server for a test suite: etcd + kube-apiserver (+
 * kube-controller-manager) on loopback, started by the shared scripts in
 * `../shared/k8s` (beside the checkout; `TRELLIS_K8S_SCRIPTS` overrides) from
 * the binaries in `TRELLIS_K8S_BIN` (default `~/.cache/trellis-k8s/bin`).
 *
 * Each server gets its own run dir under a temp dir and free ports, so suites
 * and helpers running at the same time never share one. Starting takes
 * 5-8 s: start one per test file in `before()` and share it.
 *
 * When the binaries or scripts are missing, `requireKubeApiServer` skips the
 * suite with one line saying what is missing and how to build it, unless
 * `TRELLIS_REQUIRE_K8S=1` (CI), where it fails instead: a broken build must
 * not pass as skipped.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './cli-runner';
import { addressInUse, freePort } from './free-port';
import { makeTmpDir } from './tmp-dir';

/** Where the scripts and binaries are, or why the server cannot run here. */
export type KubeApiServerAvailability =
  | { available: true; scripts: string; bin: string; version: string }
  | { available: false; reason: string };

/** What `kubectl` printed. */
export interface KubectlResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** A running API server. */
export interface KubeApiServer {
  /** The run dir (PKI, logs, pid files). */
  readonly runDir: string;
  /** An admin (system:masters) kubeconfig. */
  readonly kubeconfig: string;
  /** `https://127.0.0.1:PORT`. */
  readonly server: string;
  /** The PKI dir: ca.crt, sa.key/sa.pub (ServiceAccount signing), admin client cert. */
  readonly pkiDir: string;
  /** kube-apiserver's `--version`, e.g. `v1.20.2`. */
  readonly version: string;
  /** Runs kubectl against this server (KUBECONFIG set); never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): KubectlResult;
  /** Like kubectl, but throws with stderr on a non-zero exit and returns stdout. */
  kubectlOk(args: string[], opts?: { input?: string; timeoutMs?: number }): string;
  /**
   * Stops and starts the whole server on the same ports, data and PKI. With
   * `rotateServiceAccountKey`, a new ServiceAccount signing key signs from then
   * on and the old public key still verifies (both are in sa.pub), as in a
   * real key rotation.
   */
  restart(opts?: { rotateServiceAccountKey?: boolean }): Promise<void>;
  /**
   * Crashes the API server (and stops etcd and the controller manager),
   * keeping data, PKI and ports, so clients see it unreachable until `up()`.
   */
  down(): Promise<void>;
  /** Starts what `down()` stopped, on the same ports, data and PKI; resolves once /readyz is ok. */
  up(): Promise<void>;
  /**
   * Starts the optional Kubernetes 1.36 CRD server (apiextensions-apiserver,
   * built by ../shared/k8s/build-apiext-1.36.sh) beside this server, sharing
   * its etcd and authn; resolves to its kubeconfig (no /api: use `--raw`), or
   * null when it is not built here.
   */
  startCrdServer136(): Promise<string | null>;
  /** Stops what start started (recorded PIDs) and removes the run dir. */
  stop(): Promise<void>;
}

/** Options of {@link startKubeApiServer}. */
export interface StartKubeApiServerOptions {
  /** No controller manager (Deployments make no Pods, no token controller). Default false. */
  noControllerManager?: boolean;
}

function scriptsDir(): string {
  return process.env.TRELLIS_K8S_SCRIPTS ?? join(REPO_ROOT, '..', 'shared', 'k8s');
}

function binDir(): string {
  return process.env.TRELLIS_K8S_BIN ?? join(homedir(), '.cache', 'trellis-k8s', 'bin');
}

/** Checks (without starting anything) whether a server can run on this machine. */
export function kubeApiServerAvailability(): KubeApiServerAvailability {
  const scripts = scriptsDir();
  const bin = binDir();
  const build = `build it with ${join(scripts, 'build-k8s-1.20.sh')}`;
  if (!existsSync(join(scripts, 'start-apiserver.sh'))) {
    return { available: false, reason: `no ../shared/k8s scripts at ${scripts} (set TRELLIS_K8S_SCRIPTS to the folder with start-apiserver.sh)` };
  }
  if (!existsSync(join(bin, 'kube-apiserver'))) return { available: false, reason: `no kube-apiserver in ${bin} (${build})` };
  for (const tool of ['etcd', 'kubectl', 'openssl', 'curl']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return { available: false, reason: `${tool} is not on PATH (${build}; it installs etcd)` };
  }
  const v = spawnSync(join(bin, 'kube-apiserver'), ['--version'], { encoding: 'utf8' });
  const version = /v\d+\.\d+\.\d+\S*/.exec(v.stdout ?? '')?.[0];
  if (v.status !== 0 || !version) return { available: false, reason: `${join(bin, 'kube-apiserver')} --version failed (${build})` };
  return { available: true, scripts, bin, version };
}

/**
 * For a mocha `before()`: skips the suite with one line when no server can
 * run here, or throws under TRELLIS_REQUIRE_K8S=1. Returns the availability
 * when it can run.
 */
export function requireKubeApiServer(ctx: { skip(): void }, what: string): Extract<KubeApiServerAvailability, { available: true }> {
  const a = kubeApiServerAvailability();
  if (a.available) return a;
  if (process.env.TRELLIS_REQUIRE_K8S === '1') throw new Error(`${what} needs a real Kubernetes API server and TRELLIS_REQUIRE_K8S=1: ${a.reason}`);
  console.warn(`      skipped (${what}): ${a.reason}`);
  ctx.skip();
  throw new Error('unreachable: skip() throws');
}

/** Starts a fresh server in its own temp run dir on free ports; resolves once /readyz is ok. */
export async function startKubeApiServer(opts: StartKubeApiServerOptions = {}): Promise<KubeApiServer> {
  const a = kubeApiServerAvailability();
  if (!a.available) throw new Error(`cannot start a Kubernetes API server: ${a.reason}`);
  const tmp = makeTmpDir('trellis-k8s-');
  const runDir = join(tmp.dir, 'run');
  const ports = { ETCD_PORT: await freePort(), ETCD_PEER_PORT: await freePort(), APISERVER_PORT: await freePort(), KCM_PORT: await freePort() };
  const withKcm = !opts.noControllerManager && existsSync(join(a.bin, 'kube-controller-manager'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
    TRELLIS_K8S_BIN: a.bin,
    K8S_BIN: a.bin,
    ...(opts.noControllerManager ? { NO_KCM: '1' } : {}),
  };
  const kubeconfig = join(runDir, 'admin.kubeconfig');
  const pkiDir = join(runDir, 'pki');
  const start = (): void => {
    const r = spawnSync('bash', [join(a.scripts, 'start-apiserver.sh'), runDir], { env, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) {
      spawnSync('bash', [join(a.scripts, 'stop-apiserver.sh'), runDir], { encoding: 'utf8' });
      throw new Error(`start-apiserver.sh failed (exit ${r.status}): ${(r.stdout + r.stderr).trim().split('\n').slice(-15).join('\n')}`);
    }
  };
  // etcd and kube-apiserver cannot be told port 0 and say what they bound, so their ports are picked here. Should
  // another process take one before they bind it (their log says so), they are started once more on fresh ports,
  // with a fresh etcd data dir (its member is recorded with the old peer URL). So is an etcd that was not healthy
  // within the script's 10 s: on a loaded 2-core CI machine its /health once still answered 503 then.
  const firstStart = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return start();
      } catch (err) {
        const logs = ['etcd.log', 'kube-apiserver.log'].map((n) => join(runDir, n)).filter((p) => existsSync(p)).map((p) => readFileSync(p, 'utf8')).join('\n');
        const etcdSlow = /etcd did not start/.test(String(err));
        if (attempt >= 2 || !(addressInUse(logs) || etcdSlow)) throw err;
        rmSync(join(runDir, 'etcd-data'), { recursive: true, force: true });
        for (const k of ['ETCD_PORT', 'ETCD_PEER_PORT', 'APISERVER_PORT'] as const) env[k] = String(await freePort());
      }
    }
  };
  const stopProcesses = (): void => {
    spawnSync('bash', [join(a.scripts, 'stop-apiserver.sh'), runDir], { encoding: 'utf8', timeout: 60_000 });
  };
  // The script starts the controller manager in the background and does not wait for it. Wait until it
  // serves /healthz (the EndpointSlices tests rely on come from it); one that died (its port taken by
  // another suite's process between freePort() and its bind) is started again, on a new port.
  const kcmHealthy = async (): Promise<'ok' | 'dead' | 'slow'> => {
    const pidFile = join(runDir, 'kube-controller-manager.pid');
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 0);
      } catch {
        return 'dead';
      }
      if ((await httpsStatus(Number(env.KCM_PORT), '/healthz')) === 200) return 'ok';
      await new Promise((r) => setTimeout(r, 250));
    }
    return 'slow';
  };
  try {
    await firstStart();
    for (let attempt = 1; withKcm; attempt++) {
      const kcm = await kcmHealthy();
      if (kcm === 'ok') break;
      const logFile = join(runDir, 'kube-controller-manager.log');
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
      if (attempt >= 3) throw new Error(`kube-controller-manager is ${kcm === 'dead' ? 'not running' : 'not healthy after 60 s'}; its log ends:\n${log}`);
      stopProcesses();
      env.KCM_PORT = String(await freePort());
      start();
    }
  } catch (err) {
    stopProcesses();
    tmp.cleanup();
    throw err;
  }
  const kubectl = (args: string[], o: { input?: string; timeoutMs?: number } = {}): KubectlResult => {
    const r = spawnSync('kubectl', args, { env: { ...process.env, KUBECONFIG: kubeconfig }, input: o.input, encoding: 'utf8', timeout: o.timeoutMs ?? 60_000 });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
  };
  const down = (): void => {
    // A crash, not a graceful stop: kube-apiserver drains open watches for seconds before it exits,
    // and a client must survive a crash anyway.
    try {
      process.kill(Number(readFileSync(join(runDir, 'kube-apiserver.pid'), 'utf8').trim()), 'SIGKILL');
    } catch {
      // already gone
    }
    stopProcesses();
  };
  let stopped = false;
  return {
    runDir,
    kubeconfig,
    server: `https://127.0.0.1:${env.APISERVER_PORT}`,
    pkiDir,
    version: a.version,
    kubectl,
    kubectlOk(args, o) {
      const r = kubectl(args, o);
      if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim()}`);
      return r.stdout;
    },
    async startCrdServer136() {
      if (!existsSync(join(a.bin, 'apiextensions-apiserver-1.36'))) return null;
      const r = spawnSync('bash', [join(a.scripts, 'start-apiext-1.36.sh'), runDir], { env: { ...env, APIEXT_PORT: String(await freePort()) }, encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0) throw new Error(`start-apiext-1.36.sh failed (exit ${r.status}): ${(r.stdout + r.stderr).trim().split('\n').slice(-15).join('\n')}`);
      return join(runDir, 'apiext.kubeconfig');
    },
    async restart(o = {}) {
      down();
      if (o.rotateServiceAccountKey) rotateServiceAccountKey(pkiDir);
      start();
    },
    async down() {
      down();
    },
    async up() {
      start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      stopProcesses();
      tmp.cleanup();
    },
  };
}

/**
 * A new RSA signing key in sa.key; sa.pub keeps the old public key after the
 * new one, so tokens signed before the rotation still verify (kube-apiserver
 * reads every key in --service-account-key-file).
 */
function rotateServiceAccountKey(pkiDir: string): void {
  const oldPub = readFileSync(join(pkiDir, 'sa.pub'), 'utf8');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const newPub = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(join(pkiDir, 'sa.key'), privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), { mode: 0o600 });
  writeFileSync(join(pkiDir, 'sa.pub'), newPub + oldPub);
}

/** The status of an HTTPS GET on loopback (a self-signed server: only reachability and status are read), or 0. */
function httpsStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpsGet({ host: '127.0.0.1', port, path, rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}
