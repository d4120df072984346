/**
 * The sidecar never loads yaml or ajv (issue 15): the control plane sends
 * AuthorizationPolicies compiled, and the sidecar decodes them by hand. This
 * runs the real sidecar bundle (cli/dist/trellis-sidecar.js, what `trellis
 * sidecar` runs) in a child process against a real `trellis control-plane`
 * with a policy set, its settings in a JSON config file, and asks that
 * process which modules it holds once the policies are applied.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, REPO_ROOT, sidecarPorts, trellisSync, waitFor } from '@trellis/testkit';
import { benchPolicySet } from '../bench/dataplane/idle-rss-with-policies';

const TD = 'cluster.local';
const BUNDLE = join(REPO_ROOT, 'cli', 'dist', 'trellis-sidecar.js');

/** Runs the bundle's `trellis sidecar`, logs to stderr; on a line on stdin, prints the on-demand modules it has loaded. */
const PROBE = `
const { runSidecarCli } = require(${JSON.stringify(BUNDLE)});
process.stdin.setEncoding('utf8').on('data', () => {
  const loaded = Object.keys(require.cache).filter((f) => /node_modules\\/(yaml|ajv|ajv-formats)\\//.test(f));
  process.stdout.write(JSON.stringify({ loaded, bundle: Object.keys(require.cache).includes(${JSON.stringify(BUNDLE)}) }) + '\\n');
});
runSidecarCli({ argv: ['sidecar', '--config', process.argv[1]], stdout: process.stderr, stderr: process.stderr, env: {} });
`;

describe('trellis sidecar with compiled policies from a real control plane', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-policy-wire-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  let probe: ChildProcess | undefined;
  let probeLog = '';

  after(async () => {
    if (probe?.exitCode === null) probe.kill('SIGKILL');
    await group.killAllAndWait();
    tmp.cleanup();
  });

  it('Should enforce a pushed 20-policy set without ever loading yaml or ajv', async () => {
    // The inbound port is published by the join token, so it is picked before the start; the others are bound from port 0.
    const inPort = await freePort();
    expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
    const token = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', `spiffe://${TD}/ns/bench/sa/bench`, '--service', 'bench', '--labels', 'app=bench', '--ports', String(inPort)]);
    expect(token.status, token.stderr).to.equal(0);
    writeFileSync(f('token'), token.stdout.trim() + '\n', { mode: 0o600 });
    mkdirSync(f('policies'));
    writeFileSync(f('policies/bench.yaml'), benchPolicySet(20));
    writeFileSync(f('revocations.yaml'), 'serials: []\nspiffeIds: []\n');
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--revocations', f('revocations.yaml'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const cpPort = (await controlPlanePorts(cp)).listen;

    // A JSON config file: the sidecar reads it without the YAML library.
    writeFileSync(
      f('sidecar.json'),
      JSON.stringify({ controlPlane: `127.0.0.1:${cpPort}`, caBundle: f('ca/root.pem'), tokenFile: f('token'), namespace: 'bench', service: 'bench', serviceAccount: 'bench', labels: 'app=bench', inbound: `127.0.0.1:${inPort}=${await freePort()}/http`, admin: '127.0.0.1:0' }),
    );
    probe = spawn(process.execPath, ['-e', PROBE, f('sidecar.json')], { cwd: tmp.dir, stdio: ['pipe', 'pipe', 'pipe'] });
    probe.stderr!.setEncoding('utf8').on('data', (d: string) => (probeLog += d));
    const bound = sidecarPorts(probe);
    const reports: string[] = [];
    probe.stdout!.setEncoding('utf8').on('data', (d: string) => reports.push(...d.split('\n').filter(Boolean)));
    let admin = 0;
    try {
      admin = (await bound).admin!;
      await waitFor('the sidecar to apply 20 policies', async () => probeLog.split('\n').some((l) => l.includes('authorization policies applied') && l.includes('"count":20')));
      await waitFor('the sidecar to be ready', async () => (await httpGet(admin, '/ready')).status === 200);
    } catch (err) {
      process.stderr.write(probeLog.slice(-3000));
      throw err;
    }

    // What it holds is the compiled form, shown as pushed.
    const dump = JSON.parse((await httpGet(admin, '/config_dump')).body) as { authorizationPolicies: Array<Record<string, unknown>> };
    expect(dump.authorizationPolicies).to.have.length(20);
    expect(dump.authorizationPolicies[0]).to.include({ namespace: 'bench', name: 'p00', action: 'ALLOW', dryRun: false });
    // Plaintext (PERMISSIVE) requests are judged against the set: rule 1 of each policy allows GET /public/N/*.
    expect((await httpGet(inPort, '/public/3/x')).status).to.equal(502); // allowed: no app listens on the target port
    expect((await httpGet(inPort, '/private')).status).to.equal(403);

    probe.stdin!.write('report\n');
    await waitFor('the module report', async () => reports.length > 0);
    expect(JSON.parse(reports[0]!)).to.deep.equal({ loaded: [], bundle: true });
  });
});
