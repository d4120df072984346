/**
 * The key-exchange policy end to end, with real processes: a control plane
 * with --key-exchange, sidecars on both data paths (a native-relay sidecar
 * and a Node-path sidecar, each calling the other), and classical-only peers
 * from outside the mesh: Debian's `openssl s_client` (OpenSSL 3.0) and, where
 * the machine has one, a Node 20 client. What each side reports is checked
 * against the other side's own view.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { adminGet, type ControlPlaneProcess } from './control-plane-harness';
import { controlPlanePorts, httpGet, LEGACY_NODE, legacyNodePath, makeTmpDir, OPENSSL, openssl, ProcessGroup, reservePorts, sidecarPorts, skipUnless, trellisSync, waitFor } from '@trellis/testkit';

const TD = 'example.org';
const CART = (path: string): string => `spiffe://${TD}/ns/shop/sa/cart-${path}`;
const WEB = (path: string): string => `spiffe://${TD}/ns/shop/sa/web-${path}`;
const PATHS = ['native', 'node'] as const;
const OTHER = { native: 'node', node: 'native' } as const;

const POLICIES = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: trellis-system}
spec: {mtls: {mode: STRICT}}
`;

/** Runs a child to completion with stdin `input`; resolves its stdout and stderr together. */
function run(cmd: string, args: string[], input = ''): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', () => resolve(out));
    p.stdin.end(input);
    setTimeout(() => p.kill(), 15_000).unref();
  });
}

/** The group `openssl s_client` (OpenSSL 3.0) reports, or null when its handshake failed. */
function sClientGroup(out: string): string | null {
  return /Server Temp Key: (?:ECDH, )?([A-Za-z0-9-]+)/.exec(out)?.[1] ?? null;
}

for (const policy of ['prefer', 'require'] as const) {
  describe(`The key-exchange policy ${policy} on every hop (real control plane, sidecars on both data paths, classical peers)`, function () {
    this.timeout(120_000);
    const tmp = makeTmpDir(`trellis-kex-${policy}-`);
    const f = (n: string): string => join(tmp.dir, n);
    const group = new ProcessGroup(tmp.dir);
    const port: Record<string, number> = {};
    let cp: ChildProcess;
    let echo: Server;
    const cpProcess = (): ControlPlaneProcess => ({ adminPort: port.cpAdmin!, adminCredentials: f('ca.admin') }) as ControlPlaneProcess;
    const stats = async (p: number): Promise<string> => (await httpGet(p, '/stats')).body;
    const metric = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line ? Number(line.split(' ').pop()) : 0;
    };

    before(async function () {
      skipUnless(this, OPENSSL);
      // The carts' inbound ports are published by their join tokens, so they are reserved before the start; every other
      // port is bound from port 0 and read back from the process's log line.
      const names = PATHS.map((p) => `cartIn-${p}`);
      const reserved = await reservePorts(names.length);
      names.forEach((n, i) => (port[n] = reserved.ports[i]!));
      expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
      expect(trellisSync(['admin', 'credentials', '--ca-dir', f('ca'), '--out', f('ca.admin')]).status).to.equal(0);
      mkdirSync(f('policies'));
      writeFileSync(f('policies/mesh.yaml'), POLICIES);
      // A client certificate of the mesh for the classical peers, so their handshakes complete.
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('peer.key')]);
      openssl(['req', '-new', '-key', f('peer.key'), '-subj', '/CN=peer', '-out', f('peer.csr')]);
      const signed = trellisSync(['ca', 'sign', '--dir', f('ca'), '--csr', f('peer.csr'), '--spiffe-id', `spiffe://${TD}/ns/outside/sa/peer`]);
      expect(signed.status, signed.stderr).to.equal(0);
      writeFileSync(f('peer.pem'), signed.stdout);
      echo = createServer((s: Socket) => s.pipe(s));
      await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
      cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--key-exchange', policy, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
      ({ listen: port.cp, admin: port.cpAdmin } = await controlPlanePorts(cp));
      const echoPort = (echo.address() as { port: number }).port;
      const bound: Array<Promise<void>> = [];
      await reserved.release();
      for (const path of PATHS) {
        for (const [name, id, extra] of [
          [`cart-${path}`, CART(path), ['--service', `cart-${path}`, '--ports', String(port[`cartIn-${path}`])]],
          [`web-${path}`, WEB(path), ['--service', `web-${path}`]],
        ] as const) {
          const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', '5', ...extra]);
          expect(t.status, t.stderr).to.equal(0);
          writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
        }
        const common = ['sidecar', '--control-plane', `127.0.0.1:${port.cp}`, '--ca-bundle', f('ca/root.pem'), '--data-path', path, '--drain', '0s'];
        const cart = group.spawn([...common, '--token-file', f(`cart-${path}.token`), '--service', `cart-${path}`, '--inbound', `127.0.0.1:${port[`cartIn-${path}`]}=${echoPort}`, '--admin', '127.0.0.1:0']);
        bound.push(sidecarPorts(cart).then((b) => void (port[`cartAdmin-${path}`] = b.admin!)));
        // Each web sidecar calls the cart on the other data path.
        const other = OTHER[path];
        const web = group.spawn([...common, '--token-file', f(`web-${path}.token`), '--service', `web-${path}`, '--outbound', `127.0.0.1:0=127.0.0.1:${port[`cartIn-${other}`]}#${CART(other)}`, '--admin', '127.0.0.1:0']);
        bound.push(sidecarPorts(web).then((b) => void ([port[`webOut-${path}`], port[`webAdmin-${path}`]] = [b.outbound[0]!, b.admin!])));
      }
      await Promise.all(bound).then(() => waitFor('every sidecar ready', async () => {
        for (const path of PATHS) for (const a of [`cartAdmin-${path}`, `webAdmin-${path}`]) if ((await httpGet(port[a]!, '/ready')).status !== 200) return false;
        return true;
      }, 30_000)).catch((err: unknown) => {
        group.dumpLogs(20);
        throw err;
      });
    });

    afterEach(function () {
      if (this.currentTest?.state === 'failed') group.dumpLogs(20);
    });

    after(async () => {
      group.killAll();
      await new Promise<void>((r) => (echo ? echo.close(() => r()) : r()));
      tmp.cleanup();
    });

    for (const path of PATHS) {
      it(`Should carry traffic between sidecars over X25519MLKEM768, as the ${path}-path client and the ${OTHER[path]}-path server each report`, async function () {
        const other = OTHER[path];
        const before = { web: await stats(port[`webAdmin-${path}`]!), cart: await stats(port[`cartAdmin-${other}`]!) };
        // An open connection through web's outbound port, to see it in both config dumps.
        const conn = netConnect(port[`webOut-${path}`]!, '127.0.0.1');
        const echoed = await new Promise<string>((resolve, reject) => {
          conn.once('data', (d: Buffer) => resolve(d.toString()));
          conn.once('error', reject);
          conn.write('ping');
        });
        expect(echoed).to.equal('ping');
        const after = { web: await stats(port[`webAdmin-${path}`]!), cart: await stats(port[`cartAdmin-${other}`]!) };
        const series = (dir: string): string => `trellis_handshakes_total{direction="${dir}",result="ok",group="X25519MLKEM768"}`;
        expect(metric(after.web, series('outbound')) - metric(before.web, series('outbound')), 'the client counted a hybrid handshake').to.be.at.least(1);
        expect(metric(after.cart, series('inbound')) - metric(before.cart, series('inbound')), 'the server counted a hybrid handshake').to.be.at.least(1);
        for (const admin of [port[`webAdmin-${path}`]!, port[`cartAdmin-${other}`]!]) {
          const dump = JSON.parse((await httpGet(admin, '/config_dump')).body) as {
            keyExchange: { policy: string; byGroup: Record<string, number>; connections: Array<{ group: string | null }> };
            controlPlane: { connection: { group: string | null } };
          };
          expect(dump.keyExchange.policy).to.equal(policy);
          expect(dump.keyExchange.byGroup['X25519MLKEM768'], 'the open connection in /config_dump').to.be.at.least(1);
          expect(dump.keyExchange.connections.some((c) => c.group === 'X25519MLKEM768')).to.equal(true);
          expect(dump.controlPlane.connection.group, 'the sidecar to control-plane hop').to.equal('X25519MLKEM768');
        }
        conn.destroy();
      });
    }

    it('Should count every sidecar\'s control-plane connection as X25519MLKEM768 on the control plane', async function () {
      const text = (await adminGet(cpProcess(), '/metrics')).body;
      expect(metric(text, 'trellis_handshakes_total{listener="discovery",group="X25519MLKEM768",result="ok"}')).to.be.at.least(4);
      expect(text).to.not.match(/trellis_handshakes_total\{listener="discovery",group="X25519",result="ok"\} [1-9]/);
    });

    for (const path of PATHS) {
      it(`Should ${policy === 'prefer' ? 'let OpenSSL 3.0 s_client in over X25519' : 'refuse OpenSSL 3.0 s_client and count it'} on a ${path}-path inbound port`, async function () {
        const admin = port[`cartAdmin-${path}`]!;
        const before = await stats(admin);
        const out = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port[`cartIn-${path}`]}`, '-cert', f('peer.pem'), '-cert_chain', f('peer.pem'), '-key', f('peer.key'), '-CAfile', f('ca/root.pem')], 'Q\n');
        await waitFor('the sidecar to count it', async () => {
          const now = await stats(admin);
          return policy === 'prefer'
            ? metric(now, 'trellis_handshakes_total{direction="inbound",result="ok",group="X25519"}') > metric(before, 'trellis_handshakes_total{direction="inbound",result="ok",group="X25519"}')
            : metric(now, 'trellis_refusals_total{direction="inbound",reason="kex_not_hybrid"}') > metric(before, 'trellis_refusals_total{direction="inbound",reason="kex_not_hybrid"}');
        });
        expect(sClientGroup(out), out.slice(0, 400)).to.equal(policy === 'prefer' ? 'X25519' : null);
      });

      it(`Should ${policy === 'prefer' ? 'let a Node 20 client in over X25519' : 'refuse a Node 20 client and count it'} on a ${path}-path inbound port`, async function () {
        skipUnless(this, LEGACY_NODE);
        const admin = port[`cartAdmin-${path}`]!;
        const before = await stats(admin);
        const script = `const fs=require('fs');const t=require('tls');const c=t.connect({host:'127.0.0.1',port:+process.argv[1],key:fs.readFileSync(process.argv[2]),cert:fs.readFileSync(process.argv[3]),ca:fs.readFileSync(process.argv[4]),checkServerIdentity:()=>undefined},()=>{console.log('group',c.getEphemeralKeyInfo().name);setTimeout(()=>c.end(),200)});c.on('error',e=>console.log('error',e.code))`;
        const out = await run(legacyNodePath()!, ['-e', script, String(port[`cartIn-${path}`]), f('peer.key'), f('peer.pem'), f('ca/root.pem')]);
        if (policy === 'prefer') expect(out).to.match(/^group X25519$/m);
        else expect(out).to.match(/^error /m);
        await waitFor('the sidecar to count it', async () => {
          const now = await stats(admin);
          return policy === 'prefer'
            ? metric(now, 'trellis_handshakes_total{direction="inbound",result="ok",group="X25519"}') > metric(before, 'trellis_handshakes_total{direction="inbound",result="ok",group="X25519"}')
            : metric(now, 'trellis_refusals_total{direction="inbound",reason="kex_not_hybrid"}') > metric(before, 'trellis_refusals_total{direction="inbound",reason="kex_not_hybrid"}');
        });
      });
    }

    it(`Should ${policy === 'prefer' ? 'let s_client reach the control plane\'s listeners over X25519' : 'refuse s_client on the control plane\'s discovery and admin ports, and count it'}`, async function () {
      for (const [listener, p] of [['discovery', port.cp!], ['admin', port.cpAdmin!]] as const) {
        const before = (await adminGet(cpProcess(), '/metrics')).body;
        const out = await run('openssl', ['s_client', '-connect', `127.0.0.1:${p}`, '-CAfile', f('ca/root.pem')], 'Q\n');
        expect(sClientGroup(out), `${listener}: ${out.slice(0, 300)}`).to.equal(policy === 'prefer' ? 'X25519' : null);
        if (policy === 'require') {
          const series = `trellis_handshakes_total{listener="${listener}",group="unknown",result="kex_not_hybrid"}`;
          await waitFor(`the ${listener} refusal counted`, async () => metric((await adminGet(cpProcess(), '/metrics')).body, series) > metric(before, series));
        } else if (listener === 'admin') {
          const series = 'trellis_handshakes_total{listener="admin",group="X25519",result="ok"}';
          await waitFor('the admin handshake counted', async () => metric((await adminGet(cpProcess(), '/metrics')).body, series) > metric(before, series));
        }
      }
      if (policy === 'require') {
        const refused = metric((await adminGet(cpProcess(), '/metrics')).body, 'trellis_connections_refused_total{reason="kex_not_hybrid"}');
        expect(refused).to.be.at.least(1);
      }
    });
  });
}

describe('The key-exchange policy off (real control plane and sidecars)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-kex-off-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  after(() => {
    group.killAll();
    tmp.cleanup();
  });

  it('Should negotiate X25519 between sidecars and with the control plane, never the hybrid', async function () {
    // cart's inbound port is published by its join token, so it is reserved before the start; the rest are bound from port 0.
    const { ports, release } = await reservePorts(1);
    const cartIn = ports[0]!;
    expect(trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]).status).to.equal(0);
    mkdirSync(f('policies'));
    writeFileSync(f('policies/mesh.yaml'), POLICIES);
    for (const [name, extra] of [['cart', ['--service', 'cart', '--ports', String(cartIn)]], ['web', ['--service', 'web']]] as const) {
      const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', `spiffe://${TD}/ns/shop/sa/${name}`, ...extra]);
      writeFileSync(f(`${name}.token`), t.stdout.trim() + '\n', { mode: 0o600 });
    }
    const echo = createServer((s: Socket) => s.on('error', () => s.destroy()).pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--key-exchange', 'off', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const cpPort = (await controlPlanePorts(cp)).listen;
    const common = ['sidecar', '--control-plane', `127.0.0.1:${cpPort}`, '--ca-bundle', f('ca/root.pem'), '--drain', '0s'];
    await release();
    const cart = group.spawn([...common, '--token-file', f('cart.token'), '--service', 'cart', '--inbound', `127.0.0.1:${cartIn}=${(echo.address() as { port: number }).port}`, '--admin', '127.0.0.1:0']);
    const web = group.spawn([...common, '--token-file', f('web.token'), '--service', 'web', '--outbound', `127.0.0.1:0=127.0.0.1:${cartIn}#spiffe://${TD}/ns/shop/sa/cart`, '--admin', '127.0.0.1:0']);
    const [cartAdmin, webOut] = await Promise.all([sidecarPorts(cart).then((b) => b.admin!), sidecarPorts(web).then((b) => b.outbound[0]!)]);
    await waitFor('cart ready', async () => (await httpGet(cartAdmin, '/ready')).status === 200, 30_000);
    // web's sidecar may still be fetching its certificate and cart's endpoint: it closes a connection
    // it cannot carry yet, so each try opens its own (errors handled) and the first echo ends the wait.
    let conn: Socket | undefined;
    await waitFor('an echo through the pair', () =>
      new Promise<boolean>((resolve) => {
        const c = netConnect(webOut, '127.0.0.1');
        let settled = false;
        const fail = (): void => {
          if (settled) return;
          settled = true;
          c.destroy();
          resolve(false);
        };
        c.on('error', fail);
        c.once('close', fail);
        c.once('data', () => {
          if (settled) return;
          settled = true;
          conn = c;
          resolve(true);
        });
        c.write('x');
        setTimeout(fail, 1000);
      }),
    );
    const dump = JSON.parse((await httpGet(cartAdmin, '/config_dump')).body) as { keyExchange: { policy: string; byGroup: Record<string, number> }; controlPlane: { connection: { group: string } } };
    expect(dump.keyExchange.policy).to.equal('off');
    expect(dump.keyExchange.byGroup).to.deep.equal({ X25519: 1 });
    expect(dump.controlPlane.connection.group).to.equal('X25519');
    conn!.destroy();
    await new Promise<void>((r) => echo.close(() => r()));
  });
});
