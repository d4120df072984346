/**
 * What a sidecar says about itself against what was attested, end to end: a
 * real `trellis control-plane`, join tokens minted by the real CLI with the
 * service, labels and ports they bind, and the real DiscoveryClient over
 * gRPC/TLS. A claim the attestation does not back is refused with
 * PERMISSION_DENIED and TRELLIS_CP_ATTESTATION_MISMATCH, counted by reason,
 * logged as an audit event, and never reaches another sidecar.
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { makeTmpDir } from '@trellis/testkit';
import { adminJson, FakeSidecar, initCa, joinToken, metricValue, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

interface EndpointsBody {
  service: string;
  endpoints: Array<{ address: string; spiffeId: string }>;
}

const MISMATCH = 'TRELLIS_CP_ATTESTATION_MISMATCH';

describe('attested workload metadata (real control plane, real gRPC/TLS)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let policyDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  /** A sidecar for `id` whose join token carries `tokenArgs` (e.g. --service ...). */
  function sidecar(id: string, tokenArgs: string[], node: Partial<ConstructorParameters<typeof FakeSidecar>[0]> = {}): FakeSidecar {
    const token = joinToken(caDir, id, ['--uses', '5', ...tokenArgs]);
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, ...node });
    sidecars.push(s);
    return s.start();
  }

  /** Waits for the stream to be refused and returns how. */
  async function refusal(s: FakeSidecar): Promise<{ grpcCode: number; serverCode: string | null }> {
    await waitFor(() => s.ends.length > 0, 'the stream to be refused');
    return { grpcCode: s.ends[0]!.grpcCode, serverCode: s.ends[0]!.serverCode };
  }

  const endpointsOf = (s: FakeSidecar, service: string): EndpointsBody | undefined => (s.bodies.get('endpoints') as EndpointsBody[] | undefined)?.find((b) => b.service === service);

  before(async () => {
    tmp = makeTmpDir('trellis-cp-attest-');
    caDir = join(tmp.dir, 'ca');
    policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    writeFileSync(join(policyDir, 'cart.yaml'), allowPolicy('cart-allow', 'shop', 'cart'));
    cp = await startControlPlaneProcess(caDir, policyDir);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('Should refuse sa/rogue, whose token attests service ledger, when it announces service payments, so payments\' callers never see its address', async () => {
    const paymentsId = `spiffe://${TD}/ns/shop/sa/payments`;
    const payments = sidecar(paymentsId, ['--service', 'payments', '--ports', '8080', '--labels', 'app=payments'], { service: 'payments', inboundPorts: [8080], labels: { app: 'payments' } });
    await payments.rotate();
    const caller = sidecar(`spiffe://${TD}/ns/shop/sa/frontend`, []);
    await waitFor(() => endpointsOf(caller, 'payments')?.endpoints.length === 1, 'the caller to see payments');
    const before = await metricValue(cp, 'trellis_attestation_refusals_total', 'reason="service"');

    const rogueId = `spiffe://${TD}/ns/shop/sa/rogue`;
    const rogue = sidecar(rogueId, ['--service', 'ledger', '--ports', '9090'], { service: 'payments', inboundPorts: [9090] });
    expect(await refusal(rogue)).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: MISMATCH });
    expect(await metricValue(cp, 'trellis_attestation_refusals_total', 'reason="service"')).to.be.greaterThan(before);
    const audit = cp.logs.find((l) => l.includes('"event":"audit"') && l.includes(rogueId) && l.includes(MISMATCH));
    expect(audit, 'an audit line for the refused claim').to.not.equal(undefined);
    expect(JSON.parse(audit!)).to.include({ reason: 'service' });

    // Give a wrongly published endpoint every chance to be pushed, then look.
    const probe = sidecar(`spiffe://${TD}/ns/shop/sa/probe`, []);
    await waitFor(() => endpointsOf(probe, 'payments') !== undefined, 'a fresh subscriber to get endpoints');
    for (const s of [caller, probe]) {
      expect(endpointsOf(s, 'payments')!.endpoints.map((e) => e.spiffeId)).to.deep.equal([paymentsId]);
      expect(JSON.stringify(s.bodies.get('endpoints'))).to.not.contain(rogueId);
    }
    const proxies = await adminJson<{ proxies: Array<{ spiffeId: string }> }>(cp, '/debug/proxies');
    expect(proxies.proxies.map((p) => p.spiffeId)).to.not.include(rogueId);
    for (const s of [rogue, caller, probe, payments]) s.stop();
  });

  it('Should refuse labels the token does not attest, and select policies by the attested labels when the node claims none', async () => {
    const id = `spiffe://${TD}/ns/shop/sa/cart`;
    const liar = sidecar(id, ['--labels', 'app=cart'], { labels: { app: 'payments' } });
    expect(await refusal(liar)).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: MISMATCH });
    expect(await metricValue(cp, 'trellis_attestation_refusals_total', 'reason="labels"')).to.be.greaterThan(0);
    liar.stop();

    const quiet = sidecar(id, ['--labels', 'app=cart']);
    await waitFor(() => quiet.last('authz') !== undefined, 'authz to arrive');
    const policies = quiet.bodies.get('authz') as Array<{ policies: Array<{ name: string }> }>;
    expect(policies[0]!.policies.map((p) => p.name)).to.deep.equal(['cart-allow']);
    quiet.stop();
  });

  const refusals: Array<[string, string, string[], Partial<ConstructorParameters<typeof FakeSidecar>[0]>]> = [
    ['an inbound port the token does not attest', 'ports', ['--service', 'web', '--ports', '8080'], { service: 'web', inboundPorts: [8080, 22] }],
    ['an address other than the one its stream comes from', 'address', ['--service', 'web', '--ports', '8080'], { service: 'web', inboundPorts: [8080], address: '10.9.9.9' }],
    ['a service when the token attests none', 'service', [], { service: 'web' }],
  ];
  for (const [what, reason, tokenArgs, node] of refusals) {
    it(`Should refuse ${what} (reason ${reason})`, async () => {
      const before = await metricValue(cp, 'trellis_attestation_refusals_total', `reason="${reason}"`);
      const s = sidecar(`spiffe://${TD}/ns/web/sa/${reason}`, tokenArgs, node);
      expect(await refusal(s)).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: MISMATCH });
      expect(await metricValue(cp, 'trellis_attestation_refusals_total', `reason="${reason}"`)).to.be.greaterThan(before);
      s.stop();
    });
  }

  it('Should refuse a namespace claim from a SPIFFE ID that names no namespace', async () => {
    const s = sidecar(`spiffe://${TD}/vm/batch-7`, [], { namespace: 'finance' });
    expect(await refusal(s)).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: MISMATCH });
    s.stop();
  });

  it('Should publish the address the stream comes from and only the attested ports it announces', async () => {
    const id = `spiffe://${TD}/ns/shop/sa/orders`;
    const orders = sidecar(id, ['--service', 'orders', '--ports', '8080,8443'], { service: 'orders', inboundPorts: [8443] });
    await orders.rotate();
    const caller = sidecar(`spiffe://${TD}/ns/shop/sa/orders-caller`, []);
    await waitFor(() => endpointsOf(caller, 'orders') !== undefined, 'orders endpoints');
    expect(endpointsOf(caller, 'orders')!.endpoints).to.deep.equal([{ address: '127.0.0.1:8443', spiffeId: id }]);
    for (const s of [orders, caller]) s.stop();
  });

  it('Should keep what the join token attested for renewals over mTLS, across a control-plane restart, and refuse a renewal stream that claims more', async () => {
    const id = `spiffe://${TD}/ns/shop/sa/inventory`;
    const first = sidecar(id, ['--service', 'inventory', '--ports', '8080', '--labels', 'app=inventory'], { service: 'inventory', inboundPorts: [8080], labels: { app: 'inventory' } });
    await first.rotate();
    first.stop();

    await cp.stop();
    cp = await startControlPlaneProcess(caDir, policyDir);

    // No token: the SVID alone authenticates these streams.
    const renewer = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, service: 'inventory', inboundPorts: [8080], labels: { app: 'inventory' } });
    sidecars.push(renewer);
    renewer.creds = first.creds;
    renewer.start();
    await renewer.rotate();
    const caller = sidecar(`spiffe://${TD}/ns/shop/sa/inventory-caller`, []);
    await waitFor(() => endpointsOf(caller, 'inventory')?.endpoints.length === 1, 'inventory to be published from the renewal stream');
    renewer.stop();

    // The SVID issued on the renewal stream carries the same attestation forward.
    for (const [what, node] of [
      ['service', { service: 'payments', inboundPorts: [8080], labels: { app: 'inventory' } }],
      ['labels', { service: 'inventory', inboundPorts: [8080], labels: { app: 'payments' } }],
      ['ports', { service: 'inventory', inboundPorts: [9999], labels: { app: 'inventory' } }],
    ] as const) {
      const greedy = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, ...node, inboundPorts: [...node.inboundPorts] });
      sidecars.push(greedy);
      greedy.creds = renewer.creds;
      greedy.start();
      expect(await refusal(greedy), what).to.deep.equal({ grpcCode: grpc.status.PERMISSION_DENIED, serverCode: MISMATCH });
      greedy.stop();
    }
    caller.stop();
  });
});

function allowPolicy(name: string, ns: string, app: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  selector:
    matchLabels:
      app: ${app}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["${TD}/ns/shop/sa/web"]
`;
}
