/**
 * `trellis up` as a user runs it: the real binary, real child processes, the
 * bundled example copied into a temp dir (the scenario edits its policy dir).
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { addressInUse, makeTmpDir, REPO_ROOT, reservePorts, trellisSpawn, trellisSync, type CliResult } from '@trellis/testkit';
import { meshWithFreePorts, PORT_FIELD } from './mesh-on-free-ports';

/** Every child log under `stateDir/logs`, concatenated. */
function childLogs(stateDir: string): string {
  const dir = join(stateDir, 'logs');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n') : '';
}

/** PIDs of processes whose command line mentions `marker`. */
function processesMentioning(marker: string): number[] {
  const r = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.includes(marker) && !l.includes('ps -eo'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

function waitFor(read: () => string, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      const m = pattern.exec(read());
      if (m) return resolve(m);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${pattern}; output so far:\n${read().slice(-3000)}`));
      setTimeout(tick, 200);
    };
    tick();
  });
}

describe('trellis up (real binary, real children)', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof makeTmpDir>;
  let config: string;

  let example: string;
  /** Frees the reserved ports right before `trellis up` binds them; the next mesh file gets fresh ones. */
  let releasePorts: () => Promise<void> = async () => undefined;
  before(async () => {
    tmp = makeTmpDir('trellis-up-');
    cpSync(join(REPO_ROOT, 'examples'), join(tmp.dir, 'examples'), { recursive: true });
    example = join(tmp.dir, 'examples', 'mesh.yaml');
    config = join(tmp.dir, 'examples', 'mesh-free-ports.yaml');
    releasePorts = (await meshWithFreePorts(example, config)).release;
  });
  after(async () => {
    await releasePorts();
    tmp.cleanup();
  });

  /**
   * Runs `trellis up ARGS` to completion on the reserved ports. Should another
   * process take one in the moment between release and bind (EADDRINUSE in a
   * child log), runs again on fresh ports, at most twice more.
   */
  async function upOnFreePorts(args: string[], stateDir: string): Promise<CliResult> {
    for (let attempt = 1; ; attempt++) {
      await releasePorts();
      const r = trellisSync(['up', '--config', config, '--state-dir', stateDir, ...args], { timeoutMs: 200_000 });
      if (r.status === 0 || attempt === 3 || !addressInUse(childLogs(stateDir))) return r;
      releasePorts = (await meshWithFreePorts(example, config)).release;
    }
  }

  it('Should not bind the example\'s fixed ports: every port in the mesh file it runs is a reserved free one', async () => {
    const fixed = [...readFileSync(example, 'utf8').matchAll(PORT_FIELD)].map((m) => m[2]);
    const used = [...readFileSync(config, 'utf8').matchAll(PORT_FIELD)].map((m) => m[2]);
    expect(used).to.have.length(fixed.length);
    expect(used.filter((p) => fixed.includes(p))).to.deep.equal([]);
  });

  it('Should pass every step of the example scenario and exit 0 with --once, showing no child log lines but keeping them in files', async () => {
    const stateDir = join(tmp.dir, 'state');
    const r = await upOnFreePorts(['--scenario', '--once'], stateDir);
    const steps = r.stdout.split('\n').filter((l) => /^(PASS|FAIL) step \d/.test(l));
    expect(steps, r.stdout + r.stderr.slice(-4000)).to.have.length(5);
    expect(steps.filter((l) => l.startsWith('FAIL')), r.stdout).to.deep.equal([]);
    expect(r.stdout).to.contain('scenario: 5 passed, 0 failed');
    expect(r.status).to.equal(0);
    // The terminal shows the scenario and warnings or errors only: no JSON log line, from a child or from up itself.
    const terminal = `${r.stdout}\n${r.stderr}`.split('\n');
    expect(terminal.filter((l) => /^(\[[^\]]+\] )?\{"time"/.test(l)), r.stderr.slice(0, 2000)).to.deep.equal([]);
    // Each child's whole log is in <state-dir>/logs/<workload>-<process>.log, named once on the terminal.
    const logs = join(stateDir, 'logs');
    expect(readdirSync(logs).sort()).to.deep.equal(['control-plane.log', 'frontend-app.log', 'frontend-sidecar.log', 'ledger-app.log', 'ledger-sidecar.log', 'payments-app.log', 'payments-sidecar.log']);
    expect(readFileSync(join(logs, 'payments-sidecar.log'), 'utf8')).to.match(/^\{"time".*"msg":"sidecar ready"/m);
    expect(readFileSync(join(logs, 'control-plane.log'), 'utf8')).to.contain('"msg":"control plane ready"');
    expect(terminal.filter((l) => l.includes('payments-sidecar.log')), r.stdout).to.have.length(1);
    expect(r.stdout).to.contain(`trellis up: child logs in ${logs}/`);
    expect(processesMentioning(tmp.dir), 'no child may outlive trellis up').to.deep.equal([]);
    // The CA was created once, with its key 0600, and the policy dir is as it was.
    expect(existsSync(join(tmp.dir, 'state', 'ca', 'root.pem'))).to.equal(true);
    // Admin credentials were provisioned under the state dir (step 5 read /debug/policies over mTLS with them).
    expect(statSync(join(tmp.dir, 'state', 'admin', 'svid.key')).mode & 0o777).to.equal(0o600);
    expect(existsSync(join(tmp.dir, 'examples', 'policies', 'zz-scenario-allow-frontend.yaml'))).to.equal(false);
  });

  it('Should interleave every child log line, prefixed with its name, with --verbose; restart a child that dies; and stop every child on Ctrl-C', async () => {
    await releasePorts();
    const child = trellisSpawn(['up', '--config', config, '--state-dir', join(tmp.dir, 'state'), '--status-every', '1', '--verbose']);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => out, /press Ctrl-C to stop/, 90_000).catch((e: Error) => {
        throw new Error(`${e.message}\n--- stderr ---\n${err.slice(-3000)}`);
      });
      expect(err, 'the CA must be reused, not replaced').to.contain('"msg":"reusing CA"');
      expect(err).to.match(/^\[payments\/sidecar\] \{"time"/m);
      // The live status names each workload with its identity.
      await waitFor(() => out, /ledger\s+yes\s+spiffe:\/\/trellis\.local\/ns\/shop\/sa\/ledger/, 30_000);
      // Kill the ledger sidecar as a crash would.
      const victim = processesMentioning(join(tmp.dir, 'state', 'workloads', 'ledger', 'token'));
      expect(victim, 'the ledger sidecar process').to.have.length(1);
      process.kill(victim[0]!, 'SIGKILL');
      await waitFor(() => err, /"msg":"child exited","child":"ledger\/sidecar"/, 10_000);
      await waitFor(() => err, /"msg":"restarting child","child":"ledger\/sidecar"/, 15_000);
      await waitFor(() => out.slice(out.lastIndexOf('WORKLOAD')), /ledger\s+yes/, 60_000);
      child.kill('SIGINT');
      expect(await exited).to.equal(0);
      expect(out).to.contain('trellis up: stopped every child');
      expect(processesMentioning(tmp.dir), 'no child may outlive trellis up').to.deep.equal([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('Should refuse a broken mesh file with every problem and its line, exit 1, and start nothing', () => {
    const bad = join(tmp.dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(config, 'utf8').replace('svidTtl: 1m', 'svidTtl: soon').replace('namespace: shop\n    serviceAccount: payments', 'namespace: shop\n    colour: blue\n    serviceAccount: payments'));
    const r = trellisSync(['up', '--config', bad, '--state-dir', join(tmp.dir, 'state2'), '--once']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.match(/bad\.yaml:6:\d+ svidTtl: /);
    expect(r.stderr).to.match(/bad\.yaml:\d+:\d+ workloads\.1\.colour: unknown field "colour"/);
    expect(r.stderr).to.contain('[TRELLIS_UP_BAD_CONFIG]');
    expect(existsSync(join(tmp.dir, 'state2'))).to.equal(false);
  });

  it('Should refuse a policy file that fails validation, naming its file and line, exit 1, and start nothing', () => {
    const dir = join(tmp.dir, 'broken-policies');
    cpSync(join(tmp.dir, 'examples'), dir, { recursive: true });
    const policy = join(dir, 'policies', 'ledger-authz.yaml');
    writeFileSync(policy, readFileSync(policy, 'utf8').replace('action: ALLOW', 'action: MAYBE'));
    const r = trellisSync(['up', '--config', join(dir, 'mesh.yaml'), '--state-dir', join(tmp.dir, 'state3'), '--once']);
    expect(r.status, r.stderr).to.equal(1);
    expect(r.stderr).to.match(/ledger-authz\.yaml:\d+:\d+: .*action/);
    expect(r.stderr).to.contain('[TRELLIS_UP_POLICY_INVALID]');
    expect(existsSync(join(tmp.dir, 'state3'))).to.equal(false);
  });
});

/** PIDs of the direct children of `pid`. */
function childrenOf(pid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
}

/** True while `pid` runs (a zombie waiting to be reaped has already died). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('trellis up and signals (real binary, a one-workload mesh)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof makeTmpDir>;

  before(() => {
    tmp = makeTmpDir('trellis-up-signals-');
    cpSync(join(REPO_ROOT, 'examples', 'policies'), join(tmp.dir, 'policies'), { recursive: true });
  });
  after(() => tmp.cleanup());

  /** Starts `trellis up` on a fresh one-workload mesh; resolves once `ready` shows on stdout, with its children's PIDs. */
  async function up(name: string, ready: RegExp, onReady?: (child: ReturnType<typeof trellisSpawn>) => void): Promise<{ child: ReturnType<typeof trellisSpawn>; exited: Promise<number | null>; children: number[]; out: () => string; controlPlanePort: number }> {
    const r = await reservePorts(5);
    const [cp, admin, app, inbound, sidecarAdmin] = r.ports;
    const file = join(tmp.dir, `${name}.yaml`);
    writeFileSync(file, [
      'trustDomain: trellis.local',
      'policyDir: ./policies',
      'svidTtl: 1m',
      `controlPlane: { listen: 127.0.0.1:${cp}, admin: 127.0.0.1:${admin} }`,
      'workloads:',
      '  - name: solo',
      '    namespace: shop',
      '    serviceAccount: solo',
      '    labels: { app: solo }',
      `    app: { builtin: echo, port: ${app} }`,
      '    inbound:',
      `      - { port: ${inbound}, appPort: ${app}, protocol: http }`,
      `    admin: 127.0.0.1:${sidecarAdmin}`,
      '',
    ].join('\n'));
    await r.release();
    const child = trellisSpawn(['up', '--config', file, '--state-dir', join(tmp.dir, `state-${name}`), '--status-every', '1']);
    let out = '';
    let err = '';
    let fired = false;
    let children: number[] = [];
    // `onReady` runs in the same turn the line arrives, not on the next poll.
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!fired && ready.test(out)) {
        fired = true;
        onReady?.(child);
        // Read right after the signal is sent: it takes the process longer than this to act on it.
        children = childrenOf(child.pid!);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // 'close', not 'exit': 'exit' can come before the last lines on stdout have been read, and the tests check them.
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await waitFor(() => out, ready, 90_000).catch((e: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${e.message}\n--- stderr ---\n${err.slice(-3000)}`);
    });
    return { child, exited, children, out: () => out, controlPlanePort: cp! };
  }

  /** After a failure: `trellis up` and the children it left. */
  function killAll(u: { child: ReturnType<typeof trellisSpawn>; children: number[] }): void {
    u.child.kill('SIGKILL');
    for (const pid of u.children.filter(alive)) process.kill(pid, 'SIGKILL');
  }

  function within(p: Promise<number | null>, ms: number): Promise<number | null | 'still running'> {
    return Promise.race([p, new Promise<'still running'>((r) => setTimeout(() => r('still running'), ms))]);
  }

  it('Should stop every child and exit 0 on one SIGTERM that arrives the moment the mesh is ready', async () => {
    // The signal lands while the first status table is being read from the sidecars.
    const u = await up('one-signal', /is running/, (child) => child.kill('SIGTERM'));
    expect(u.children.length, 'control plane, app and sidecar').to.equal(3);
    const code = await within(u.exited, 30_000);
    if (code === 'still running') killAll(u);
    expect(code, u.out()).to.equal(0);
    expect(u.out()).to.contain('trellis up: stopped every child');
    expect(u.children.filter(alive), 'no child may outlive trellis up').to.deep.equal([]);
  });

  it('Should kill every child at once and exit 130 on a second signal', async () => {
    const u = await up('two-signals', /press Ctrl-C to stop/);
    // A connection that never speaks TLS holds the control plane's graceful drain for its 5 s grace:
    // the children are still stopping when the second signal comes, and only a SIGKILL ends them at once.
    const idle = netConnect({ host: '127.0.0.1', port: u.controlPlanePort });
    idle.on('error', () => undefined);
    await new Promise<void>((r) => idle.once('connect', () => r()));
    // Two different signals (the kernel merges a pending repeat of the same one), before the first stop can finish.
    u.child.kill('SIGTERM');
    u.child.kill('SIGINT');
    const code = await within(u.exited, 30_000);
    if (code === 'still running') killAll(u);
    expect(code).to.equal(130);
    // trellis up exits right after sending the SIGKILLs; each child is gone once the kernel has torn it
    // down, which on a loaded machine is not within a fixed 300 ms. Poll for it, for at most 2 s: well
    // inside the 5 s drain the idle connection holds, so a child that was only asked to drain is still
    // alive when checked.
    for (const end = Date.now() + 2000; u.children.some(alive) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    idle.destroy();
    expect(u.children.filter(alive), 'no child may outlive trellis up').to.deep.equal([]);
  });
});

