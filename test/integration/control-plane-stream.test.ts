/**
 * The discovery stream end to end against a real `trellis control-plane`:
 * a full session with ACK and NACK, pushes that reach only the sidecars whose
 * resources changed, mTLS renewals, the admin views, and bad input on the
 * wire that ends one stream with a precise status while the rest carry on.
 */
import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AUTHORIZATION_POLICIES_TYPE_URL, encodeSidecarReport, SVID_TYPE_URL } from '@trellis/shared';
import { buildWorkloadCsr } from '@trellis/shared';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { adminGet, adminJson, FakeSidecar, initCa, joinToken, rawStream, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

interface ProxyView {
  spiffeId: string;
  authMethod: string;
  certificateExpiry: string | null;
  types: Record<string, { state: string; lastError: string | null; sentVersion: string | null }>;
}

async function metric(cp: ControlPlaneProcess, name: string, labels = ''): Promise<number> {
  const text = (await adminGet(cp, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? '{' + labels + '}' : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

const ALL_TYPES = ['bundle', 'peer_authn', 'authz', 'revocations', 'endpoints'];

describe('control plane discovery stream (real process, real gRPC/TLS)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let policyDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  /** A sidecar whose join token attests the labels, service and ports it announces. */
  function sidecar(name: string, ns: string, labels: Record<string, string>, extra: Partial<ConstructorParameters<typeof FakeSidecar>[0]> = {}): FakeSidecar {
    const id = `spiffe://${TD}/ns/${ns}/sa/${name}`;
    const attested = Object.keys(labels).length > 0 ? ['--labels', Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')] : [];
    if (extra.service) attested.push('--service', extra.service);
    if (extra.inboundPorts?.length) attested.push('--ports', extra.inboundPorts.join(','));
    const token = joinToken(caDir, id, ['--uses', '3', ...attested]);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: ns, labels, ...extra });
    sidecars.push(s);
    return s.start();
  }

  const proxies = async (): Promise<ProxyView[]> => (await adminJson<{ proxies: ProxyView[] }>(cp, '/debug/proxies')).proxies;
  const proxy = async (id: string): Promise<ProxyView | undefined> => (await proxies()).find((p) => p.spiffeId === id);

  before(async () => {
    tmp = makeTmpDir('trellis-cp-stream-');
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    cp = await startControlPlaneProcess(caDir, policyDir, ['--idle-timeout', '1s']);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('runs a full session: SVID, every resource type ACKed, shown SYNCED by /debug/proxies and trellis proxy-status', async () => {
    const s = sidecar('web', 'shop', { app: 'web' }, { service: 'web', inboundPorts: [8080] });
    await s.rotate();
    await waitFor(() => ALL_TYPES.every((t) => s.last(t) !== undefined), 'every type to be accepted');
    await waitFor(async () => {
      const p = await proxy(s.creds ? `spiffe://${TD}/ns/shop/sa/web` : '');
      return !!p && Object.values(p.types).every((t) => t.state === 'SYNCED');
    }, 'every type SYNCED on the server');
    const p = (await proxy(`spiffe://${TD}/ns/shop/sa/web`))!;
    expect(p.certificateExpiry).to.equal(s.creds!.notAfter.toISOString());
    expect(s.bodies.get('endpoints')).to.deep.equal([{ service: 'web', endpoints: [{ address: '127.0.0.1:8080', spiffeId: `spiffe://${TD}/ns/shop/sa/web` }] }]);
    expect(s.bodies.get('peer_authn')).to.deep.equal([{ mode: 'STRICT', portModes: {}, keyExchange: 'prefer' }]);

    const r = trellisSync(['proxy-status', '--admin', cp.admin], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith(`spiffe://${TD}/ns/shop/sa/web`));
    expect(row, r.stdout).to.match(/SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED$/);
    s.stop();
  });

  it('records a NACK, never re-sends the rejected version, and sends the next config change', async () => {
    let rejectAuthz = true;
    const s = sidecar('nacker', 'nack', { app: 'nacker' }, { reject: (t) => (t === 'authz' && rejectAuthz ? 'policy engine refused it' : null) });
    await waitFor(() => s.count('authz') === 1, 'the first authz push');
    const id = `spiffe://${TD}/ns/nack/sa/nacker`;
    await waitFor(async () => (await proxy(id))?.types['authz']?.state === 'NACKED', 'NACKED on the server');
    expect((await proxy(id))!.types['authz']!.lastError).to.equal('policy engine refused it');
    expect(await metric(cp, 'trellis_discovery_rejections_total', 'type="authz"')).to.be.greaterThan(0);
    const rejected = s.received.get('authz')![0];

    // An unrelated change (another namespace) does not re-send the rejected version.
    writeFileSync(join(policyDir, 'unrelated.yaml'), authz('elsewhere', 'other', 'app: x'));
    await waitFor(async () => (await adminJson<{ files: Array<{ file: string; state: string }> }>(cp, '/debug/policies')).files.some((f) => f.file.endsWith('unrelated.yaml') && f.state === 'ok'), 'the policy to load');
    const pushesAfter = await metric(cp, 'trellis_discovery_pushes_total', 'type="authz"');
    expect(s.count('authz')).to.equal(1);

    // A change that selects this workload produces a new version, which is sent and accepted.
    rejectAuthz = false;
    writeFileSync(join(policyDir, 'nack.yaml'), authz('allow-web', 'nack', 'app: nacker'));
    await waitFor(() => s.count('authz') === 2, 'the new authz version');
    expect(s.received.get('authz')![1]).to.not.equal(rejected);
    await waitFor(async () => (await proxy(id))?.types['authz']?.state === 'SYNCED', 'SYNCED after the new version');
    expect(await metric(cp, 'trellis_discovery_pushes_total', 'type="authz"')).to.be.greaterThan(pushesAfter);
    s.stop();
  });

  it('pushes a policy change only to the sidecars it selects', async () => {
    const cart = sidecar('cart', 'store', { app: 'cart' });
    const web = sidecar('webfront', 'store', { app: 'web' });
    const other = sidecar('ledger', 'finance', { app: 'cart' });
    await waitFor(() => [cart, web, other].every((s) => s.count('authz') === 1 && s.count('peer_authn') === 1), 'the initial pushes');
    const before = await metric(cp, 'trellis_discovery_pushes_total', 'type="authz"');

    writeFileSync(join(policyDir, 'store-cart.yaml'), authz('cart-allow', 'store', 'app: cart'));
    await waitFor(() => cart.count('authz') === 2, 'the change to reach cart');
    // Pushes for one change go out in a single pass, so the counter is final once cart has it.
    expect(await metric(cp, 'trellis_discovery_pushes_total', 'type="authz"')).to.equal(before + 1);
    expect(web.count('authz')).to.equal(1);
    expect(other.count('authz')).to.equal(1);
    expect(cart.count('peer_authn')).to.equal(1);
    const policies = cart.bodies.get('authz') as Array<{ policies: Array<{ name: string }> }>;
    expect(policies[0]!.policies.map((p) => p.name)).to.deep.equal(['cart-allow']);
    for (const s of [cart, web, other]) s.stop();
  });

  it('renews over mTLS with the current SVID once the join token is spent', async () => {
    const id = `spiffe://${TD}/vm/renewer`;
    const token = joinToken(caDir, id, ['--uses', '1']);
    const first = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token });
    sidecars.push(first);
    first.start();
    await first.rotate();
    first.stop();
    const before = await metric(cp, 'trellis_svids_issued_total', 'method="svid"');
    const second = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token });
    sidecars.push(second);
    second.creds = first.creds;
    second.start();
    const leaf = await second.rotate();
    expect(leaf.serialNumber.toLowerCase()).to.not.equal(first.creds!.serialHex);
    expect(await metric(cp, 'trellis_svids_issued_total', 'method="svid"')).to.equal(before + 1);
    await waitFor(async () => (await proxy(id))?.authMethod === 'svid', 'the stream to show svid auth');
    second.stop();
  });

  it('takes the last of reports sent back to back: one sooner than 200 ms after the last is held, not lost', async () => {
    // A sidecar sends a report only when it changed, so after a burst (a stream that took over re-sends
    // the last report, and the one naming the new certificate follows at once) it may send nothing for
    // minutes: the last of the burst must land without a further report to carry it.
    const id = `spiffe://${TD}/ns/shop/sa/reporter`;
    const s = sidecar('reporter', 'shop', {});
    await s.rotate();
    const report = (reason: string): Buffer =>
      encodeSidecarReport({ windowSeconds: 300, calls: [], workload: { ready: false, readyReason: reason, dataPath: 'node', renewAt: null, rotations: [] } });
    const shown = async (): Promise<string | null | undefined> =>
      (await adminJson<{ workloads: Array<{ spiffeId: string | null; readyReason: string | null }> }>(cp, '/debug/mesh')).workloads.find((w) => w.spiffeId === id)?.readyReason;
    await waitFor(() => s.client.sendReport(report('first')), 'a stream that takes reports');
    await waitFor(async () => (await shown()) === 'first', 'the first report on /debug/mesh');
    const dropped = await metric(cp, 'trellis_sidecar_reports_total', 'result="dropped"');
    expect(s.client.sendReport(report('second'))).to.equal(true);
    expect(s.client.sendReport(report('third'))).to.equal(true);
    expect(s.client.sendReport(report('fourth'))).to.equal(true);
    await waitFor(async () => (await shown()) === 'fourth', 'the last report of the burst on /debug/mesh, with nothing sent after it');
    // At most one report is held at a time: those it replaced were dropped, never taken after a newer one.
    expect(await metric(cp, 'trellis_sidecar_reports_total', 'result="dropped"')).to.be.at.least(dropped + 1);
    await new Promise((r) => setTimeout(r, 400));
    expect(await shown()).to.equal('fourth');
    s.stop();
  });

  describe('bad input on the wire', () => {
    // A join-token stream obtains one SVID; a flood of CSRs needs a stream authenticated by an SVID (mTLS).
    const cases: Array<[string, (call: grpc.ClientDuplexStream<Record<string, unknown>, unknown>, id: string) => void, number, string, 'svid'?]> = [
      ['an unknown type_url', (c, id) => c.write({ node: { spiffe_id: id }, type_url: 'type.example/Nope' }), grpc.status.INVALID_ARGUMENT, 'TRELLIS_CP_UNKNOWN_TYPE'],
      ['a NACK for a nonce never sent', (c, id) => c.write({ node: { spiffe_id: id }, type_url: AUTHORIZATION_POLICIES_TYPE_URL, response_nonce: 'zz99', error_detail: { code: 3, message: 'x' } }), grpc.status.INVALID_ARGUMENT, 'TRELLIS_CP_UNKNOWN_NONCE'],
      ['a malformed CSR', (c, id) => c.write({ node: { spiffe_id: id }, type_url: SVID_TYPE_URL, csr: Buffer.from('30820102deadbeef', 'hex') }), grpc.status.INVALID_ARGUMENT, 'TRELLIS_CA_BAD_DER'],
      ['a first request without node', (c) => c.write({ type_url: AUTHORIZATION_POLICIES_TYPE_URL }), grpc.status.INVALID_ARGUMENT, 'TRELLIS_CP_BAD_REQUEST'],
      ['a sidecar report that is not the documented JSON', (c, id) => c.write({ node: { spiffe_id: id }, report: Buffer.from('{"calls":') }), grpc.status.INVALID_ARGUMENT, 'TRELLIS_CP_BAD_REPORT'],
      ['a sidecar report over its bounds (129 call entries)', (c, id) => {
        const calls = Array.from({ length: 129 }, (_, i) => ({ peer: `spiffe://${TD}/w/${i}`, direction: 'inbound', allowed: 1, refused: [] }));
        c.write({ node: { spiffe_id: id }, report: Buffer.from(JSON.stringify({ windowSeconds: 300, calls, workload: { ready: true, readyReason: '', dataPath: 'node', renewAt: null, rotations: [] } })) });
      }, grpc.status.INVALID_ARGUMENT, 'TRELLIS_CP_BAD_REPORT'],
      ['a message over 64 KiB', (c, id) => c.write({ node: { spiffe_id: id }, type_url: SVID_TYPE_URL, csr: Buffer.alloc(64 * 1024 + 10, 1) }), grpc.status.RESOURCE_EXHAUSTED, 'TRELLIS_CP_MESSAGE_TOO_LARGE'],
      // Each CSR waits for a signing slot (at least one event-loop turn), so a burst of 200 arrives faster than it is served.
      ['more than 64 requests waiting at once', (c, id) => {
        const csr = validCsr(id);
        for (let i = 0; i < 200; i++) c.write({ node: { spiffe_id: id }, type_url: SVID_TYPE_URL, csr });
      }, grpc.status.RESOURCE_EXHAUSTED, 'TRELLIS_CP_REQUEST_FLOOD', 'svid'],
      ['a stream that opens and sends nothing', () => undefined, grpc.status.DEADLINE_EXCEEDED, 'TRELLIS_CP_IDLE_STREAM'],
    ];
    for (const [what, send, code, serverCode, auth] of cases) {
      it(`ends the stream on ${what} with ${grpc.status[code]} and ${serverCode}, counts it in trellis_discovery_stream_errors_total, and the server carries on`, async () => {
        const id = `spiffe://${TD}/vm/bad-${Math.random().toString(36).slice(2, 8)}`;
        const errorsBefore = await metric(cp, 'trellis_discovery_stream_errors_total', `code="${serverCode}"`);
        let raw: ReturnType<typeof rawStream>;
        if (auth === 'svid') {
          const token = joinToken(caDir, id);
          const first = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token }).start();
          await first.rotate();
          first.stop();
          raw = rawStream(cp.address, caDir, '', first.creds!);
        } else {
          raw = rawStream(cp.address, caDir, joinToken(caDir, id));
        }
        send(raw.call, id);
        const st = await raw.done;
        raw.client.close();
        expect(st.code, st.details).to.equal(code);
        expect(st.serverCode, st.details).to.equal(serverCode);
        expect(await metric(cp, 'trellis_discovery_stream_errors_total', `code="${serverCode}"`)).to.equal(errorsBefore + 1);
        // Another sidecar is still served.
        const ok = sidecar(`after-${Math.random().toString(36).slice(2, 8)}`, 'shop', {});
        await ok.rotate();
        ok.stop();
      });
    }
  });

  it('pushes a `trellis revoke` to every sidecar and ends the revoked workload\'s own stream at once', async () => {
    const watcher = sidecar('watcher', 'shop', {});
    const victim = sidecar('victim', 'shop', {});
    await victim.rotate();
    await waitFor(() => watcher.count('revocations') === 1 && victim.count('revocations') === 1, 'the initial revocation lists');
    const revokedId = `spiffe://${TD}/ns/shop/sa/victim`;
    const r = trellisSync(['revoke', '--ca-dir', caDir, '--spiffe-id', revokedId, '--reason', 'test']);
    expect(r.status, r.stderr).to.equal(0);
    await waitFor(() => watcher.count('revocations') === 2, 'the new revocation list');
    expect(watcher.bodies.get('revocations')).to.deep.equal([{ serials: [], spiffeIds: [revokedId] }]);
    await waitFor(() => victim.ends.some((e) => e.serverCode === 'TRELLIS_CP_CERT_REJECTED'), 'the revoked stream to end');
    // It cannot come back: neither its certificate nor a token for its identity is accepted.
    const token = joinToken(caDir, revokedId);
    const again = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: revokedId, token: () => token, namespace: 'shop' });
    sidecars.push(again);
    again.start();
    await waitFor(() => again.ends.length > 0, 'the refusal');
    expect(again.ends[0]!.serverCode).to.equal('TRELLIS_CP_CERT_REJECTED');
    for (const s of [watcher, victim, again]) s.stop();
    expect(trellisSync(['revoke', '--ca-dir', caDir, '--spiffe-id', revokedId, '--lift']).status).to.equal(0);
  });

  it('serves /healthz, /readyz and trellis_-prefixed metrics', async () => {
    expect((await adminGet(cp, '/healthz')).status).to.equal(200);
    expect((await adminGet(cp, '/readyz')).status).to.equal(200);
    const text = (await adminGet(cp, '/metrics')).body;
    const names = [...new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!))];
    expect(names.length).to.be.greaterThan(5);
    for (const n of names) expect(n.startsWith('trellis_'), n).to.equal(true);
    for (const n of ['trellis_svids_issued_total', 'trellis_svids_refused_total', 'trellis_connected_sidecars', 'trellis_discovery_pushes_total', 'trellis_discovery_rejections_total', 'trellis_discovery_push_ack_seconds', 'trellis_ca_intermediate_expiry_seconds', 'trellis_ca_root_expiry_seconds']) {
      expect(names).to.include(n);
    }
    expect(await metric(cp, 'trellis_ca_intermediate_expiry_seconds')).to.be.greaterThan(300 * 86400);
  });
});

function validCsr(spiffeId: string): Buffer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, spiffeId);
}

function authz(name: string, ns: string, selector: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  selector:
    matchLabels:
      ${selector}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/shop/sa/web"]
`;
}
