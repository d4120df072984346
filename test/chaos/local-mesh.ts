/**
 * A `trellis up` mesh for fault runs: the real binary on loopback, two
 * workloads (frontend calls payments over an outbound port), one-minute
 * certificates, reserved ports, and a way to find each child process to
 * freeze, kill or signal it.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, REPO_ROOT, reservePorts, trellisSpawn } from '@trellis/testkit';

/** The running mesh. */
export interface LocalMesh {
  readonly up: ChildProcess;
  readonly stateDir: string;
  /** The plaintext port the load goes to: frontend's outbound listener for payments. */
  readonly frontendToPayments: number;
  readonly admin: { frontend: number; payments: number; controlPlane: number };
  /** What `trellis up` printed so far (stdout and stderr). */
  output(): string;
  /** The PID of a child: `control-plane`, `frontend/sidecar`, `payments/sidecar`, `payments/app`, ... */
  pid(child: string): number | undefined;
  /** Stops `trellis up` (SIGTERM) and waits; removes the state dir. */
  stop(): Promise<void>;
}

/** Starts the mesh and resolves once `trellis up` says it is running. */
export async function startLocalMesh(opts: { svidTtl?: string; signalWhenRunning?: NodeJS.Signals } = {}): Promise<LocalMesh> {
  const tmp = makeTmpDir('trellis-chaos-');
  cpSync(join(REPO_ROOT, 'examples', 'policies'), join(tmp.dir, 'policies'), { recursive: true });
  const r = await reservePorts(10);
  const [cp, cpAdmin, feApp, feIn, feOut, feAdmin, payApp, payIn, payAdmin] = r.ports as [number, number, number, number, number, number, number, number, number];
  const file = join(tmp.dir, 'mesh.yaml');
  writeFileSync(file, [
    'trustDomain: trellis.local',
    'policyDir: ./policies',
    `svidTtl: ${opts.svidTtl ?? '1m'}`,
    `controlPlane: { listen: 127.0.0.1:${cp}, admin: 127.0.0.1:${cpAdmin} }`,
    'workloads:',
    '  - name: frontend',
    '    namespace: shop',
    '    serviceAccount: frontend',
    '    labels: { app: frontend, tier: web }',
    `    app: { builtin: echo, port: ${feApp} }`,
    `    inbound: [{ port: ${feIn}, appPort: ${feApp}, protocol: http }]`,
    `    outbound: [{ port: ${feOut}, service: payments }]`,
    `    admin: 127.0.0.1:${feAdmin}`,
    '  - name: payments',
    '    namespace: shop',
    '    serviceAccount: payments',
    '    labels: { app: payments, tier: backend }',
    `    app: { builtin: echo, port: ${payApp} }`,
    `    inbound: [{ port: ${payIn}, appPort: ${payApp}, protocol: http }]`,
    `    admin: 127.0.0.1:${payAdmin}`,
    '',
  ].join('\n'));
  await r.release();
  const stateDir = join(tmp.dir, 'state');
  const up = trellisSpawn(['up', '--config', file, '--state-dir', stateDir, '--status-every', '0']);
  let out = '';
  let signalled = false;
  up.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    // In the very turn the line arrives: a signal the moment the mesh is ready.
    if (opts.signalWhenRunning && !signalled && out.includes('is running')) {
      signalled = true;
      up.kill(opts.signalWhenRunning);
    }
  });
  up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => up.once('exit', () => resolve()));
  const deadline = Date.now() + 90_000;
  while (!out.includes('is running')) {
    if ((up.exitCode !== null && !signalled) || Date.now() > deadline) {
      up.kill('SIGKILL');
      throw new Error(`trellis up did not start: ${out.slice(-2000)}`);
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const markers: Record<string, string> = {
    'control-plane': ' control-plane --ca-dir ',
    'frontend/sidecar': join(stateDir, 'workloads', 'frontend', 'token'),
    'payments/sidecar': join(stateDir, 'workloads', 'payments', 'token'),
    'frontend/app': `echo-app --name frontend`,
    'payments/app': `echo-app --name payments`,
  };
  return {
    up,
    stateDir,
    frontendToPayments: feOut,
    admin: { frontend: feAdmin, payments: payAdmin, controlPlane: cpAdmin },
    output: () => out,
    pid: (child) => {
      const ps = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(up.pid)], { encoding: 'utf8' }).stdout;
      const line = ps.split('\n').find((l) => l.includes(markers[child] ?? `\u0000${child}`));
      return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
    },
    stop: async () => {
      if (up.exitCode === null) up.kill('SIGTERM');
      await exited;
      tmp.cleanup();
    },
  };
}

/** One child's log from the mesh's state dir. */
export function childLog(mesh: LocalMesh, child: string): string {
  try {
    return readFileSync(join(mesh.stateDir, 'logs', `${child.replace('/', '-')}.log`), 'utf8');
  } catch {
    return '';
  }
}
