/**
 * A server sidecar is drained (SIGTERM) under steady keep-alive traffic
 * while a second instance of the service serves: real processes (control
 * plane, two server sidecars with their apps, a client sidecar), 16
 * keep-alive clients at about 50 requests/s each.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync } from '@trellis/testkit';
import { sleep, until, type FaultRow, type Scenario } from '../fault-row';
import { SteadyLoad } from '../steady-load';

const TD = 'cluster.local';

export const drainWithSecondInstance: Scenario = {
  name: 'drain-with-second-instance',
  summary: 'SIGTERM one of two server sidecars of a service under 16 keep-alive clients (~800 req/s)',
  async run(): Promise<FaultRow> {
    const tmp = makeTmpDir('trellis-chaos-drain-');
    const f = (n: string): string => join(tmp.dir, n);
    const group = new ProcessGroup(tmp.dir, 200_000);
    const apps: Server[] = [];
    let load: SteadyLoad | undefined;
    try {
      if (trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status !== 0) throw new Error('ca init failed');
      mkdirSync(f('policies'));
      // Port 0 wherever the process says what it bound (a port picked free here could be taken before the child binds it).
      const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
      const cpPort = (await controlPlanePorts(cp)).listen;
      const token = (name: string, id: string, extra: string[]): string => {
        const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '1', ...extra]);
        writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
        return f(`${name}.token`);
      };
      const sidecar = async (name: string, args: string[]): Promise<{ admin: number; outbound: readonly number[]; proc: ReturnType<ProcessGroup['spawn']> }> => {
        const proc = group.spawn(['sidecar', '--control-plane', `127.0.0.1:${cpPort}`, '--ca-bundle', f('ca/root.pem'), '--admin', '127.0.0.1:0', ...args]);
        const { admin: bound, outbound } = await sidecarPorts(proc);
        const admin = bound!;
        if (!(await until(async () => (await httpGet(admin, '/ready', { timeoutMs: 1000 })).status === 200, 30_000))) throw new Error(`${name} not ready`);
        return { admin, outbound, proc };
      };
      const cart = async (name: string): Promise<ReturnType<typeof sidecar>> => {
        const server = createServer((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-length': Buffer.byteLength(name) }).end(name);
        });
        server.keepAliveTimeout = 60_000;
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
        apps.push(server);
        // The inbound port is published by the join token, so it is picked before the start.
        const inbound = await freePort();
        return sidecar(name, ['--token-file', token(name, `spiffe://${TD}/ns/shop/sa/cart`, ['--service', 'cart', '--ports', String(inbound)]), '--service', 'cart',
          '--inbound', `127.0.0.1:${inbound}=${(server.address() as { port: number }).port}/http`, '--drain', '5s']);
      };
      const a = await cart('cart-a');
      const b = await cart('cart-b');
      const web = await sidecar('web', ['--token-file', token('web', `spiffe://${TD}/ns/shop/sa/web`, ['--service', 'web']), '--service', 'web', '--outbound', '127.0.0.1:0=cart']);
      const outbound = web.outbound[0]!;
      await until(async () => {
        const dump = JSON.parse((await httpGet(web.admin, '/config_dump')).body) as { endpoints: Record<string, { addresses: string[] }> };
        return (dump.endpoints['cart']?.addresses.length ?? 0) === 2;
      }, 20_000);
      load = new SteadyLoad(outbound, { concurrency: 16 }).start();
      await sleep(3000);
      const drainedAt = Date.now();
      a.proc.kill('SIGTERM');
      await new Promise<void>((r) => (a.proc.exitCode !== null ? r() : a.proc.once('exit', () => r())));
      const exitedAt = Date.now();
      await sleep(3000);
      await load.stop();
      const counts = load.count();
      const servedBy = (name: string): number => load!.outcomes.filter((o) => o.ok && o.body === name).length;
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: counts.failed === 0 ? 0 : null,
        lost: counts.failed === 0 ? 'nothing' : `${counts.failed} requests`,
        details: { drainMs: exitedAt - drainedAt, duringDrain: load.count(drainedAt, exitedAt), servedByA: servedBy('cart-a'), servedByB: servedBy('cart-b'), aExitCode: a.proc.exitCode, bStillServing: b.proc.exitCode === null, failureReasons: load.reasons() },
      };
    } finally {
      if (load) await load.stop();
      group.killAll();
      for (const s of apps) {
        s.closeAllConnections();
        s.close();
      }
      tmp.cleanup();
    }
  },
};
