/**
 * The small mesh the state scenarios fault: one or two `trellis
 * control-plane` processes on one CA dir, an app behind a `cart` sidecar and
 * a `web` sidecar reaching it by service name, all real processes on
 * loopback, SVIDs of one minute renewed every few seconds (so renewals keep
 * happening while a fault is on).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { controlPlanePorts, freePort, httpGet, makeTmpDir, ProcessGroup, sidecarPorts, trellisSync, waitFor, type ControlPlanePorts } from '@trellis/testkit';

const TD = 'cluster.local';
const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: STRICT}}
`;

/** A running mesh. */
export interface StateMesh {
  readonly caDir: string;
  readonly group: ProcessGroup;
  readonly controlPlanes: ChildProcess[];
  /** Admin ports of the control planes, in order. */
  readonly cpAdmin: number[];
  /** web's outbound port to cart. */
  readonly webToCart: number;
  readonly sidecars: { web: ChildProcess; cart: ChildProcess };
  stop(): Promise<void>;
}

/**
 * Starts `replicas` control planes on `caDir` (made here when absent);
 * cart connects to the last replica (then the first), web to the first.
 */
export async function startStateMesh(o: { caDir?: string; replicas?: number; extraArgs?: string[] } = {}): Promise<StateMesh> {
  const tmp = makeTmpDir('trellis-chaos-state-');
  const f = (n: string): string => join(tmp.dir, n);
  const caDir = o.caDir ?? f('ca');
  const group = new ProcessGroup(tmp.dir, 200_000);
  if (trellisSync(['ca', 'init', '--dir', caDir, '--trust-domain', TD]).status !== 0) throw new Error('ca init failed');
  mkdirSync(f('policies'));
  writeFileSync(f('policies/mesh.yaml'), POLICIES);
  const app: Server = createServer((_req, res) => res.end('cart'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as { port: number }).port;
  const n = o.replicas ?? 1;
  const cp: number[] = [];
  const cpAdmin: number[] = [];
  const controlPlanes: ChildProcess[] = [];
  // Port 0 wherever the process says what it bound (a port picked free here could be taken before the child binds it).
  const bound: Array<Promise<ControlPlanePorts>> = [];
  for (let i = 0; i < n; i++) {
    controlPlanes.push(group.spawn(['control-plane', '--ca-dir', caDir, '--policy-dir', f('policies'), '--svid-ttl', '1m', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', ...(o.extraArgs ?? [])]));
    bound.push(controlPlanePorts(controlPlanes[i]!));
  }
  for (const b of await Promise.all(bound)) {
    cp.push(b.listen);
    cpAdmin.push(b.admin);
  }
  // cart's inbound port is published by its join token, so it is picked before the start.
  const cartIn = await freePort();
  const token = (name: string, extra: string[]): string => {
    const t = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', `spiffe://${TD}/ns/shop/sa/${name}`, '--uses', '5', ...extra]);
    if (t.status !== 0) throw new Error(`token create failed: ${t.stderr}`);
    writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    return f(`${name}.token`);
  };
  const common = ['--ca-bundle', join(caDir, 'root.pem'), '--namespace', 'shop', '--rotate-at', '0.05', '--rotate-jitter', '0.01'];
  const addr = (i: number): string[] => ['--control-plane', `127.0.0.1:${cp[i]}`];
  const cart = group.spawn(['sidecar', ...common, ...addr(n - 1), ...(n > 1 ? addr(0) : []), '--token-file', token('cart', ['--service', 'cart', '--ports', String(cartIn)]), '--service', 'cart', '--service-account', 'cart', '--inbound', `127.0.0.1:${cartIn}=${appPort}/http`, '--admin', '127.0.0.1:0']);
  const cartBound = sidecarPorts(cart);
  const web = group.spawn(['sidecar', ...common, ...addr(0), '--token-file', token('web', ['--service', 'web']), '--service', 'web', '--service-account', 'web', '--outbound', '127.0.0.1:0=cart', '--admin', '127.0.0.1:0']);
  const [cartPorts, webPorts] = await Promise.all([cartBound, sidecarPorts(web)]);
  const [cartAdmin, webOut, webAdmin] = [cartPorts.admin!, webPorts.outbound[0]!, webPorts.admin!];
  await waitFor('both sidecars ready', async () => (await httpGet(cartAdmin, '/ready')).status === 200 && (await httpGet(webAdmin, '/ready')).status === 200, 30_000);
  await waitFor('web to reach cart', async () => (await httpGet(webOut, '/')).status === 200, 30_000);
  return {
    caDir,
    group,
    controlPlanes,
    cpAdmin,
    webToCart: webOut,
    sidecars: { web, cart },
    async stop() {
      await group.killAllAndWait();
      await new Promise<void>((r) => app.close(() => r()));
      tmp.cleanup();
    },
  };
}

/** The control plane's /readyz status (its admin port speaks HTTPS; this path needs no client certificate). */
export function controlPlaneReadyz(adminPort: number): Promise<number> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port: adminPort, path: '/readyz', rejectUnauthorized: false, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** How many times `p` logged `msg` (a JSON log line's "msg") since character `from` of its log. */
export function logged(mesh: StateMesh, p: ChildProcess, msg: string, from = 0): number {
  return mesh.group.log(p).slice(from).split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
}
