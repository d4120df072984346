/**
 * `trellis up` as a user runs it: the real binary, real child processes, the
 * bundled example copied into a temp dir (the scenario edits its policy dir).
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addressInUse, makeTmpDir, REPO_ROOT, trellisSpawn, trellisSync, type CliResult } from '@trellis/testkit';
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
