/**
 * Two control-plane replicas on a real API server (kube-apiserver 1.20 on
 * loopback, each replica with its own copy of the CA dir, as the Deployment
 * runs them), sidecars on both carrying traffic. A root rotation is started
 * through the Lease holder, which is SIGKILLed right after: the other
 * replica takes the Lease and drives the rotation from the state committed
 * to Secret trellis-ca to its end (the old root dropped, after the
 * one-minute leaves of the old root expired), each step once.
 */
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, kubeApiServerAvailability, makeTmpDir, ProcessGroup, REPO_ROOT, sidecarPorts, startKubeApiServer, trellisSync, waitFor } from '@trellis/testkit';
import { until, type FaultRow, type Scenario } from '../fault-row';
import { SteadyLoad } from '../steady-load';

const TD = 'cluster.local';
const CART = `spiffe://${TD}/ns/shop/sa/cart`;

export const leaderKilledMidRotation: Scenario = {
  name: 'leader-killed-mid-rotation',
  summary: 'two replicas on a real API server; start a root rotation through the Lease holder, SIGKILL it, let the other finish the rotation under traffic',
  async run(): Promise<FaultRow> {
    const avail = kubeApiServerAvailability();
    if (!avail.available) throw new Error(`needs a Kubernetes API server: ${avail.reason}`);
    const tmp = makeTmpDir('trellis-chaos-rotation-');
    const f = (n: string): string => join(tmp.dir, n);
    const group = new ProcessGroup(tmp.dir, 200_000);
    const k8s = await startKubeApiServer({ noControllerManager: true });
    let app: Server | null = null;
    let load: SteadyLoad | null = null;
    try {
      const kubectl = (args: string[]): string => k8s.kubectlOk(args);
      kubectl(['create', 'namespace', 'trellis-system']);
      kubectl(['apply', '-f', join(REPO_ROOT, 'deploy', 'rbac.yaml')]);
      const saToken = kubectl(['-n', 'trellis-system', 'create', 'token', 'trellis-control-plane', '--duration', '1h']).trim();
      writeFileSync(f('kubeconfig'), `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\nusers: [{name: u, user: {token: "${saToken}"}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`);
      if (trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status !== 0) throw new Error('ca init failed');
      // cart's inbound port is published by its join token, so it is picked before the start; every other port is bound
      // from port 0 and read back from the process's log line (a port picked free here could be taken before the child binds it).
      const cartIn = await freePort();
      const token = (name: string, extra: string[]): string => {
        const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', `spiffe://${TD}/ns/shop/sa/${name}`, '--uses', '5', ...extra]);
        writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
        return f(`${name}.token`);
      };
      const cartToken = token('cart', ['--service', 'cart', '--ports', String(cartIn)]);
      const webToken = token('web', ['--service', 'web']);
      kubectl(['-n', 'trellis-system', 'create', 'secret', 'generic', 'trellis-ca', ...['root.pem', 'intermediate.pem', 'intermediate.key', 'chain.pem'].map((n) => `--from-file=${n}=${f(`ca/${n}`)}`), `--from-file=join-tokens.hmac.key=${f('ca/join-tokens/hmac.key')}`]);
      mkdirSync(f('policies'));
      const planes = [0, 1].map((i) => i);
      for (const i of planes) cpSync(f('ca'), f(`ca-${i}`), { recursive: true });
      const procs = planes.map((i) => group.spawn(['control-plane', '--ca-dir', f(`ca-${i}`), '--policy-dir', f('policies'), '--kubeconfig', f('kubeconfig'), '--svid-ttl', '1m', '--leader-lease', '3s', '--root-rotation-auth', 'admin-identity', '--no-policy-crds', '--no-root-cert-configmaps', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']));
      const bound = await Promise.all(procs.map((p) => controlPlanePorts(p)));
      const [cp, cpAdmin] = [bound.map((b) => b.listen), bound.map((b) => b.admin)];
      await waitFor('a leader', () => procs.some((p) => group.log(p).includes('"msg":"became leader"')), 20_000);
      const li = procs.findIndex((p) => group.log(p).includes('"msg":"became leader"'));
      const leader = procs[li]!;
      const survivor = procs[1 - li]!;
      app = createServer((_req, res) => res.end('cart'));
      await new Promise<void>((r) => app!.listen(0, '127.0.0.1', () => r()));
      const appPort = (app.address() as { port: number }).port;
      const common = ['--ca-bundle', f('ca/root.pem'), '--namespace', 'shop', '--rotate-at', '0.05', '--rotate-jitter', '0.01'];
      const both = (first: number): string[] => ['--control-plane', `127.0.0.1:${cp[first]}`, '--control-plane', `127.0.0.1:${cp[1 - first]}`];
      group.spawn(['sidecar', ...common, ...both(1 - li), '--token-file', cartToken, '--service', 'cart', '--service-account', 'cart', '--inbound', `127.0.0.1:${cartIn}=${appPort}/http`, '--admin', '127.0.0.1:0']);
      const web = group.spawn(['sidecar', ...common, ...both(li), '--token-file', webToken, '--service', 'web', '--service-account', 'web', '--outbound', `127.0.0.1:0=127.0.0.1:${cartIn}#${CART}`, '--admin', '127.0.0.1:0']);
      const webOut = (await sidecarPorts(web)).outbound[0]!;
      await waitFor('web to reach cart', async () => (await httpGet(webOut, '/')).status === 200, 30_000);
      load = new SteadyLoad(webOut, { concurrency: 1 }).start();
      const creds = f('admin');
      if (trellisSync(['admin', 'credentials', '--ca-dir', f(`ca-${li}`), '--out', creds, '--ttl', '10m']).status !== 0) throw new Error('admin credentials failed');
      const start = trellisSync(['ca', 'rotate-root', '--admin', `127.0.0.1:${cpAdmin[li]}`, '--root-dir', f('new-root'), '--reload-grace', '1s', '-o', 'json'], { env: { ...process.env, TRELLIS_ADMIN_CREDENTIALS: creds } });
      if (start.status !== 0) throw new Error(`rotate-root failed: ${start.stderr}`);
      const phaseOf = (): string => {
        const r = k8s.kubectl(['-n', 'trellis-system', 'get', 'secret', 'trellis-ca', '-o', 'jsonpath={.data.root-rotation\\.json}']);
        try {
          return (JSON.parse(Buffer.from(r.stdout, 'base64').toString('utf8')) as { phase: string }).phase;
        } catch {
          return 'none';
        }
      };
      const killedAt = Date.now();
      leader.kill('SIGKILL');
      const phaseAtKill = phaseOf();
      const tookLease = await until(() => group.log(survivor).includes('"msg":"became leader"'), 20_000, 50);
      const leaseAt = Date.now();
      const done = await until(() => phaseOf() === 'done', 150_000, 500);
      const doneAt = Date.now();
      const steps = (p: typeof leader): string[] => group.log(p).split('\n').filter((l) => l.includes('"msg":"root rotation advanced"')).map((l) => (JSON.parse(l) as { applied: string }).applied);
      // The commit is seen on the API server a moment before its step is logged.
      if (done) await until(() => steps(survivor).includes('drop-old-root'), 5000, 50);
      const counts = load.count(killedAt);
      const leaderSteps = steps(leader);
      const survivorSteps = steps(survivor);
      const all = [...leaderSteps, ...survivorSteps];
      const once = all.filter((a) => a === 'switch-intermediate').length === 1 && all.filter((a) => a === 'drop-old-root').length === 1;
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: tookLease ? leaseAt - killedAt : null,
        lost: done && once && counts.failed === 0 ? 'nothing: the rotation finished on the other replica, each step taken once, no request failed' : `rotation ${done ? 'finished' : 'NOT finished'}; steps ${JSON.stringify({ leaderSteps, survivorSteps })}; ${counts.failed} requests failed`,
        details: { failureReasons: load.reasons(killedAt), phaseAtKill, newLeaderAfterMs: tookLease ? leaseAt - killedAt : null, rotationDoneAfterKillMs: done ? doneAt - killedAt : null, stepsByKilledLeader: leaderSteps, stepsBySurvivor: survivorSteps },
      };
    } finally {
      await load?.stop();
      await group.killAllAndWait();
      if (app) await new Promise<void>((r) => app!.close(() => r()));
      await k8s.stop();
      tmp.cleanup();
    }
  },
};
