import { expect } from 'chai';
import { silentLogger } from '@trellis/shared';
import { KubernetesRegistry } from '../../src/registry/kubernetes-registry';
import { readEndpointSlice, readPod, readService } from '../../src/registry/cluster-objects';
import { boundPodStatus, podFacts, type PodFacts } from '../../src/registry/pod-facts';
import { endpointSlice, FakeFeed, pod, service } from './cluster-fixtures';

const NOW = Date.parse('2025-06-01T12:00:00Z');

describe('Whether the pod a credential is bound to exists (pure)', () => {
  const p = readPod(pod({ name: 'cart-1', uid: 'u1' }))!;
  const cases: Array<[string, Parameters<typeof boundPodStatus>, string]> = [
    ['unknown before the pods are listed', [undefined, { namespace: 'shop', name: 'cart-1', uid: 'u1' }, false, NOW], 'unknown'],
    ['gone when it is not in the listed pods', [undefined, { namespace: 'shop', name: 'cart-1', uid: 'u1' }, true, NOW], 'gone'],
    ['gone when a new pod took its name (another uid)', [p, { namespace: 'shop', name: 'cart-1', uid: 'u0' }, true, NOW], 'gone'],
    ['alive when it is there with its uid', [p, { namespace: 'shop', name: 'cart-1', uid: 'u1' }, true, NOW], 'alive'],
    ['alive during its deletion grace (deletionTimestamp under 60 s ago, as TokenReview)', [readPod(pod({ name: 'cart-1', uid: 'u1', deleting: new Date(NOW - 59_000).toISOString() }))!, { namespace: 'shop', name: 'cart-1', uid: 'u1' }, true, NOW], 'alive'],
    ['gone once deleted more than 60 s ago', [readPod(pod({ name: 'cart-1', uid: 'u1', deleting: new Date(NOW - 61_000).toISOString() }))!, { namespace: 'shop', name: 'cart-1', uid: 'u1' }, true, NOW], 'gone'],
  ];
  for (const [what, args, want] of cases) it(`Should say ${what}`, () => expect(boundPodStatus(...args)).to.equal(want));
});

describe('The facts of a pod (pure)', () => {
  it('Should list the Services that select it or whose EndpointSlices name it, in its namespace only, and its listener ports', () => {
    const p = readPod(pod({ name: 'payments-1', labels: { app: 'payments', tier: 'api' }, inbound: { 8443: 15101, 8080: 15100 } }))!;
    const services = [
      service({ name: 'payments', selector: { app: 'payments' } }),
      service({ name: 'api', selector: { tier: 'api' } }),
      service({ name: 'other', selector: { app: 'other' } }),
      service({ name: 'manual', selector: null }),
      service({ ns: 'elsewhere', name: 'payments2', selector: { app: 'payments' } }),
    ];
    const slices = [endpointSlice('v1', { service: 'manual', endpoints: [{ ip: '10.0.0.1', pod: 'payments-1' }] }), endpointSlice('v1', { service: 'stale', endpoints: [{ ip: '10.0.0.1', pod: 'payments-1', podUid: 'old' }] })];
    const f = podFacts(p, services.map((s) => readService(s)!), slices.map((s) => readEndpointSlice(s)!));
    expect(f.services).to.deep.equal(['api', 'manual', 'payments']);
    expect(f.inboundPorts).to.deep.equal([15100, 15101]);
    expect(f).to.deep.include({ serviceAccount: 'payments', ips: ['10.0.0.1'], labels: { app: 'payments', tier: 'api' } });
  });
});

describe('The Kubernetes registry (fake informers)', () => {
  const setup = (): { reg: KubernetesRegistry; pods: FakeFeed; services: FakeFeed; slices: FakeFeed } => {
    const pods = new FakeFeed();
    const services = new FakeFeed();
    const slices = new FakeFeed();
    const reg = new KubernetesRegistry({ pods, services, endpointSlices: slices, trustDomain: 'cluster.local', logger: silentLogger, nowMs: () => NOW });
    return { reg, pods, services, slices };
  };
  const bound = { namespace: 'shop', name: 'payments-1', uid: 'uid-payments-1' };
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('Should serve nothing and know no pod until Pods, Services and EndpointSlices have all been listed', async () => {
    const { reg, pods, services, slices } = setup();
    let changes = 0;
    reg.subscribe(() => changes++);
    pods.list(pod({ name: 'payments-1', labels: { app: 'payments' } }));
    services.list(service({ name: 'payments' }));
    await tick();
    expect(reg.hasSynced()).to.equal(false);
    expect(reg.lookup(bound, NOW)).to.equal('unknown');
    expect(reg.podStatus(bound)).to.equal('unknown');
    expect([...reg.view().forNamespace('shop').keys()]).to.deep.equal([]);
    expect(changes).to.equal(0);
    slices.list(endpointSlice('v1', { service: 'payments', endpoints: [{ ip: '10.0.0.1', pod: 'payments-1' }] }));
    await tick();
    expect(reg.hasSynced()).to.equal(true);
    expect(changes).to.equal(1);
    expect([...reg.view().forNamespace('shop').keys()]).to.deep.equal(['payments.shop', 'payments.shop:9001', 'payments', 'payments:9001']);
    expect((reg.lookup(bound, NOW) as PodFacts).services).to.deep.equal(['payments']);
    expect(reg.stats()).to.deep.equal({ synced: true, pods: 1, services: 1, endpointSlices: 1, published: 2 });
  });

  it('Should follow relabels and deletions, telling pod subscribers which pod changed, and replace the view whole', async () => {
    const { reg, pods, services, slices } = setup();
    pods.list(pod({ name: 'payments-1', labels: { app: 'payments' } }));
    services.list(service({ name: 'payments' }));
    slices.list(endpointSlice('v1beta1', { service: 'payments', endpoints: [{ ip: '10.0.0.1', pod: 'payments-1' }] }));
    await tick();
    const seen: string[] = [];
    reg.subscribePods((k) => seen.push(k));
    const before = reg.view();
    pods.emit('update', pod({ name: 'payments-1', labels: { app: 'payments', quarantine: 'true' } }));
    expect(seen).to.deep.equal(['shop/payments-1']);
    expect((reg.lookup(bound, NOW) as PodFacts).labels).to.deep.equal({ app: 'payments', quarantine: 'true' });
    expect(reg.view()).to.not.equal(before);
    expect(before.forNamespace('shop').get('payments.shop:9001')!.endpoints, 'an old view keeps its content').to.have.length(1);
    pods.emit('delete', pod({ name: 'payments-1' }));
    expect(seen).to.deep.equal(['shop/payments-1', 'shop/payments-1']);
    expect(reg.lookup(bound, NOW)).to.equal('gone');
    expect(reg.podStatus(bound)).to.equal('gone');
    expect([...reg.view().forNamespace('shop').keys()], 'a deleted pod is never published').to.deep.equal([]);
  });
});
