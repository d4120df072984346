/**
 * Brings a local mesh up from a MeshConfig: the CA (created once, then
 * reused; never silently replaced), the control plane, and for each workload
 * a fresh join token, its app and its sidecar, all as supervised child
 * processes of the real `trellis` binary.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest, loadAdminCredentials, PolicyStore, type AdminTarget } from '@trellis/control-plane';
import { kubernetesSpiffeId, silentLogger, TrellisError, type Logger } from '@trellis/shared';
import type { InboundPort, MeshConfig, WorkloadConfig } from './mesh-config';
import { childLogFile, Supervisor } from './supervisor';
import { getJson, httpGet, pollUntil, waitReady } from './admin-client';

export interface MeshRunnerDeps {
  logger: Logger;
  /** The terminal: children's warnings and errors (every line with `verbose`); whole logs go to `<state-dir>/logs/`. */
  output: NodeJS.WritableStream;
  verbose?: boolean;
  /** Path of the `trellis` entry script (cli/bin/trellis.js). */
  trellisBin: string;
}

/** Paths inside the state dir. */
export function statePaths(stateDir: string): { caDir: string; rootPem: string; adminCredentials: string; logsDir: string; workloadDir: (name: string) => string } {
  const caDir = join(stateDir, 'ca');
  return { caDir, rootPem: join(caDir, 'root.pem'), adminCredentials: join(stateDir, 'admin'), logsDir: join(stateDir, 'logs'), workloadDir: (name) => join(stateDir, 'workloads', name) };
}

/** The SPIFFE ID a workload of the mesh file gets. */
export function workloadSpiffeId(trustDomain: string, w: WorkloadConfig): string {
  return kubernetesSpiffeId(trustDomain, w.namespace, w.serviceAccount).toString();
}

/**
 * Refuses a policy dir whose files do not all validate, naming each problem:
 * the control plane would start but serve no policy and never report ready
 * (it fails closed at first load), and `trellis up` would wait in vain.
 */
export async function checkPolicyDir(dir: string): Promise<void> {
  const store = new PolicyStore({ dir, rescanIntervalMs: 0 }, { logger: silentLogger, now: () => new Date() });
  try {
    await store.reload();
    const st = store.status();
    const problems = [...(st.dirError ? [st.dirError] : []), ...st.files.flatMap((f) => f.errors)];
    if (problems.length > 0) {
      throw new TrellisError(
        'TRELLIS_UP_POLICY_INVALID',
        `the policy dir ${dir} does not validate, so the control plane would serve no policy and never be ready; fix:\n  ${problems.join('\n  ')}`,
        { dir, problems },
      );
    }
  } finally {
    store.close();
  }
}

/** The sidecar's `--inbound` value for a mesh file's inbound port: `127.0.0.1:PORT=APP_PORT[/PROTOCOL]`. Pure. */
export function inboundArg(p: InboundPort): string {
  return `127.0.0.1:${p.port}=${p.appPort}${p.protocol === 'tcp' ? '' : `/${p.protocol}`}`;
}

/** The `trellis token create` arguments for `w`: its identity and what it is known by. */
export function tokenArgs(caDir: string, trustDomain: string, w: WorkloadConfig): string[] {
  const args = ['--ca-dir', caDir, '--spiffe-id', workloadSpiffeId(trustDomain, w), '--ttl', '15m', '--uses', '1', '--service', w.service];
  const labels = Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(',');
  if (labels !== '') args.push('--labels', labels);
  if (w.inbound.length > 0) args.push('--ports', w.inbound.map((p) => p.port).join(','));
  return args;
}

/** Runs and supervises one local mesh. */
export class MeshRunner {
  readonly supervisor: Supervisor;
  private readonly paths: ReturnType<typeof statePaths>;

  constructor(private readonly config: MeshConfig, private readonly stateDir: string, private readonly deps: MeshRunnerDeps) {
    this.paths = statePaths(stateDir);
    this.supervisor = new Supervisor({ logger: deps.logger, output: deps.output, logDir: this.paths.logsDir, verbose: deps.verbose ?? false });
  }

  /** The log file of every child this mesh starts, in start order. */
  logFiles(): string[] {
    const names = ['control-plane', ...this.config.workloads.flatMap((w) => [`${w.name}/app`, `${w.name}/sidecar`])];
    return names.map((n) => join(this.paths.logsDir, childLogFile(n)));
  }

  /** The control plane's admin API as this mesh's admin (credentials written by {@link start}). */
  adminTarget(): AdminTarget {
    return { address: this.config.controlPlane.admin, credentials: loadAdminCredentials(this.paths.adminCredentials, new Date()) };
  }

  /** Starts everything and resolves when the control plane and every sidecar report ready. */
  async start(signal?: AbortSignal): Promise<void> {
    await checkPolicyDir(this.config.policyDir);
    mkdirSync(this.stateDir, { recursive: true });
    this.ensureCa();
    this.issueAdminCredentials();
    const cp = this.config.controlPlane;
    this.supervisor.start({
      name: 'control-plane',
      command: process.execPath,
      args: [
        this.deps.trellisBin, 'control-plane',
        '--ca-dir', this.paths.caDir,
        '--policy-dir', this.config.policyDir,
        '--listen', cp.listen,
        '--admin', cp.admin,
        '--svid-ttl', this.config.svidTtl,
        ...(cp.pathNormalization ? ['--path-normalization', cp.pathNormalization] : []),
        ...(cp.keyExchange ? ['--key-exchange', cp.keyExchange] : []),
        // Local mode is the policy dir only, even when `trellis up` itself runs in a pod.
        '--no-policy-crds', '--no-root-cert-configmaps',
      ],
      ready: () => adminRequest(this.adminTarget(), 'GET', '/readyz', undefined, 1000).then(() => true, () => false),
      // Its sidecars stop first and say goodbye; stopped together, each warned that it lost the control plane.
      stopLast: true,
    });
    const admin = this.adminTarget();
    await pollUntil(`${cp.admin}/readyz`, () => adminRequest(admin, 'GET', '/readyz', undefined, 1000).then(() => true as const), 30_000, signal);
    this.deps.logger.info('control plane ready', { listen: cp.listen, admin: cp.admin });

    for (const w of this.config.workloads) this.startWorkload(w);
    await Promise.all(this.config.workloads.map((w) => waitReady(w.admin, '/ready', 60_000, signal)));
    // Ready is about a sidecar's own identity; routable also needs the endpoints of what it calls. Until
    // the control plane's first endpoint push lands, a call to such a service is closed unanswered.
    // Only services this mesh serves are waited for, and a wait that runs out is a warning, not a failure.
    const served = new Set(this.config.workloads.map((w) => w.service));
    await Promise.all(
      this.config.workloads.map((w) => {
        const services = [...new Set(w.outbound.map((o) => o.service).filter((svc) => served.has(svc)))];
        return pollUntil(`${w.name}'s endpoints of ${services.join(', ')}`, () => knowsEndpoints(w.admin, services), 30_000, signal).catch((err: Error) => {
          if (signal?.aborted) throw err;
          this.deps.logger.warn('a sidecar has no endpoint yet for a service it calls', { workload: w.name, error: err.message });
        });
      }),
    );
    this.deps.logger.info('mesh ready', { workloads: this.config.workloads.map((w) => w.name) });
  }

  /** Stops every child; resolves when all have exited. */
  stop(): Promise<void> {
    return this.supervisor.stop();
  }

  private ensureCa(): void {
    const { caDir, rootPem } = this.paths;
    if (existsSync(rootPem)) {
      const pem = readFileSync(rootPem, 'utf8');
      // The root names its trust domain in the intermediate's URI SAN; check via the CA's own record.
      const tdFile = join(caDir, 'trust-domain');
      const recorded = existsSync(tdFile) ? readFileSync(tdFile, 'utf8').trim() : undefined;
      if (recorded !== undefined && recorded !== this.config.trustDomain) {
        throw new TrellisError(
          'TRELLIS_UP_CA_MISMATCH',
          `${caDir} holds a CA for trust domain "${recorded}" but ${this.config.file} asks for "${this.config.trustDomain}"; ` +
            `use another --state-dir, or remove ${caDir} deliberately to start over`,
          { caDir },
        );
      }
      if (!pem.includes('BEGIN CERTIFICATE')) throw new TrellisError('TRELLIS_UP_CA_BROKEN', `${rootPem} holds no certificate; remove ${caDir} to start over`);
      this.deps.logger.info('reusing CA', { caDir });
      return;
    }
    const r = spawnSync(process.execPath, [this.deps.trellisBin, 'ca', 'init', '--dir', caDir, '--trust-domain', this.config.trustDomain], { encoding: 'utf8' });
    if (r.status !== 0) throw new TrellisError('TRELLIS_UP_CA_INIT_FAILED', `trellis ca init failed: ${(r.stderr || r.stdout).trim()}`);
    writeFileSync(join(caDir, 'trust-domain'), this.config.trustDomain + '\n');
    this.deps.logger.info('created CA', { caDir, trustDomain: this.config.trustDomain });
  }

  /** Fresh admin credentials under the state dir at every start, so the local mesh needs no extra step. */
  private issueAdminCredentials(): void {
    const out = this.paths.adminCredentials;
    const r = spawnSync(process.execPath, [this.deps.trellisBin, 'admin', 'credentials', '--ca-dir', this.paths.caDir, '--out', out], { encoding: 'utf8' });
    if (r.status !== 0) throw new TrellisError('TRELLIS_UP_ADMIN_CREDENTIALS_FAILED', `trellis admin credentials failed: ${(r.stderr || r.stdout).trim()}`);
    this.deps.logger.info('admin credentials written', { dir: out, use: `TRELLIS_ADMIN_CREDENTIALS=${out}` });
  }

  /**
   * Issues a fresh single-use join token for `w` into its state dir, binding
   * its service, labels and inbound ports from the mesh file: the control
   * plane publishes those, not what the sidecar announces.
   */
  private issueToken(w: WorkloadConfig): string {
    const dir = this.paths.workloadDir(w.name);
    mkdirSync(dir, { recursive: true });
    const r = spawnSync(process.execPath, [this.deps.trellisBin, 'token', 'create', ...tokenArgs(this.paths.caDir, this.config.trustDomain, w)], { encoding: 'utf8' });
    if (r.status !== 0) throw new TrellisError('TRELLIS_UP_TOKEN_FAILED', `trellis token create for ${w.name} failed: ${(r.stderr || r.stdout).trim()}`);
    const file = join(dir, 'token');
    writeFileSync(file, r.stdout.trim() + '\n', { mode: 0o600 });
    return file;
  }

  private startWorkload(w: WorkloadConfig): void {
    const bin = this.deps.trellisBin;
    if (w.app.kind === 'builtin') {
      this.supervisor.start({ name: `${w.name}/app`, command: process.execPath, args: [bin, 'echo-app', '--name', w.name, '--listen', `127.0.0.1:${w.app.port}`] });
    } else {
      const [cmd, ...args] = w.app.command;
      this.supervisor.start({ name: `${w.name}/app`, command: cmd!, args, env: { PORT: String(w.app.port) } });
    }
    const tokenFile = join(this.paths.workloadDir(w.name), 'token');
    const args = [
      bin, 'sidecar',
      '--control-plane', this.config.controlPlane.listen,
      '--ca-bundle', this.paths.rootPem,
      '--token-file', tokenFile,
      '--trust-domain', this.config.trustDomain,
      '--namespace', w.namespace,
      '--service-account', w.serviceAccount,
      '--service', w.service,
      '--labels', Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(','),
      '--admin', w.admin,
    ];
    for (const p of w.inbound) args.push('--inbound', inboundArg(p));
    for (const p of w.outbound) args.push('--outbound', `127.0.0.1:${p.port}=${p.service}`);
    this.supervisor.start({
      name: `${w.name}/sidecar`,
      command: process.execPath,
      args,
      // A fresh single-use token at every (re)start: a sidecar that exits for want of credentials (75) is restarted with one at once.
      prepare: () => this.issueToken(w),
      ready: () => httpGet(w.admin, '/ready', 1000).then((r) => r.status === 200, () => false),
    });
  }
}

/** True once the sidecar at `admin` holds at least one endpoint of every one of `services`, else what it lacks. */
async function knowsEndpoints(admin: string, services: readonly string[]): Promise<true | string> {
  if (services.length === 0) return true;
  const dump = await getJson<{ endpoints?: Record<string, { addresses?: readonly string[] }> }>(admin, '/config_dump');
  const missing = services.filter((svc) => !dump?.endpoints?.[svc]?.addresses?.length);
  return missing.length === 0 ? true : `no endpoint yet for ${missing.join(', ')}`;
}
