import { expect } from 'chai';
import type { EndpointsResource } from '@trellis/shared';
import { clusterEndpoints, namespaceView } from '../../src/registry/cluster-endpoints';
import { objectKey, readEndpointSlice, readPod, readService, type ClusterPod, type ClusterService, type ClusterSlice } from '../../src/registry/cluster-objects';
import { endpointSlice, pod, service, type SliceEndpoint } from './cluster-fixtures';

const TD = 'cluster.local';
const PAYMENTS = `spiffe://${TD}/ns/shop/sa/payments`;

/** The endpoints the registry computes from these objects. */
function endpointsOf(objects: { pods?: unknown[]; services?: unknown[]; slices?: unknown[] }): Record<string, EndpointsResource['endpoints']> {
  const pods = new Map<string, ClusterPod>();
  for (const p of objects.pods ?? []) {
    const r = readPod(p)!;
    pods.set(objectKey(r.namespace, r.name), r);
  }
  const services = new Map<string, ClusterService>();
  for (const s of objects.services ?? []) {
    const r = readService(s)!;
    services.set(objectKey(r.namespace, r.name), r);
  }
  const slices = (objects.slices ?? []).map((s) => readEndpointSlice(s)!) as ClusterSlice[];
  return Object.fromEntries([...clusterEndpoints({ pods, services, slices }, TD)].map(([k, v]) => [k, v.endpoints]));
}

for (const version of ['v1beta1', 'v1'] as const) {
  describe(`Kubernetes endpoints from EndpointSlices discovery.k8s.io/${version} (pure)`, () => {
    const one = (e: Partial<SliceEndpoint> = {}, podOverrides: Parameters<typeof pod>[0] | null = null, svc = service({ name: 'payments' })): Record<string, EndpointsResource['endpoints']> =>
      endpointsOf({
        pods: [pod(podOverrides ?? { name: 'payments-1', labels: { app: 'payments' }, ip: '10.0.0.1' })],
        services: [svc],
        slices: [endpointSlice(version, { service: 'payments', endpoints: [{ ip: '10.0.0.1', pod: 'payments-1', ...e }] })],
      });

    it('Should publish a ready pod at its IP on the sidecar listener fronting the slice port, allowed for its ServiceAccount, under the Service name and port', () => {
      expect(one()).to.deep.equal({
        'payments.shop': [{ address: '10.0.0.1:15100', spiffeId: PAYMENTS }],
        'payments.shop:9001': [{ address: '10.0.0.1:15100', spiffeId: PAYMENTS }],
      });
    });

    it('Should read an unset ready condition as ready, as the API documents', () => {
      expect(one({ ready: null })['payments.shop:9001']).to.have.length(1);
    });

    const excluded: Array<[string, Partial<SliceEndpoint>, Parameters<typeof pod>[0] | null, Record<string, unknown> | null]> = [
      ['an endpoint marked not ready', { ready: false }, null, null],
      ['a terminating endpoint', { terminating: true }, null, null],
      ['an endpoint with no pod behind it', { pod: null }, null, null],
      ['an endpoint naming a pod that does not exist', { pod: 'payments-9' }, null, null],
      ['an endpoint naming an older pod of the same name (another uid)', { podUid: 'uid-old' }, null, null],
      ['an address that is not the pod\'s IP (a hand-written slice)', { ip: '10.0.0.66' }, null, null],
      ['a pod that was not injected (no sidecar to terminate mTLS)', {}, { name: 'payments-1', ip: '10.0.0.1', inbound: null }, null],
      ['a pod with no listener for the slice port', {}, { name: 'payments-1', ip: '10.0.0.1', inbound: { 9090: 15100 } }, null],
      ['a pod being deleted', {}, { name: 'payments-1', ip: '10.0.0.1', deleting: '2025-01-01T00:00:00Z' }, null],
      ['a pod whose ServiceAccount cannot form a SPIFFE ID', {}, { name: 'payments-1', ip: '10.0.0.1', sa: 'Not_A_Name' }, null],
      ['a slice of a Service the registry has not seen', {}, null, service({ name: 'ledger' })],
      ['a slice port the Service does not have', {}, null, service({ name: 'payments', ports: [{ name: 'grpc', port: 9002 }] })],
    ];
    for (const [what, e, p, svc] of excluded) {
      it(`Should leave out ${what}`, () => {
        expect(one(e, p, (svc ?? service({ name: 'payments' })) as ReturnType<typeof service>)).to.deep.equal({});
      });
    }

    it('Should publish every pod once per address, sorted, with each pod\'s own identity, and each Service port under its own name', () => {
      const eps = endpointsOf({
        pods: [
          pod({ name: 'payments-2', ip: '10.0.0.2', inbound: { 8080: 15100, 8443: 15101 } }),
          pod({ name: 'payments-1', ip: '10.0.0.1', inbound: { 8080: 15100, 8443: 15101 } }),
          pod({ name: 'canary-1', sa: 'payments-canary', ip: '10.0.0.3', inbound: { 8080: 15100, 8443: 15101 } }),
        ],
        services: [service({ name: 'payments', ports: [{ name: 'http', port: 80 }, { name: 'https', port: 443 }] })],
        slices: [
          endpointSlice(version, { name: 'payments-a', service: 'payments', ports: [{ name: 'http', port: 8080 }, { name: 'https', port: 8443 }], endpoints: [{ ip: '10.0.0.2', pod: 'payments-2' }, { ip: '10.0.0.1', pod: 'payments-1' }] }),
          // The same pod in a second slice (a slice being replaced) is published once.
          endpointSlice(version, { name: 'payments-b', service: 'payments', ports: [{ name: 'http', port: 8080 }, { name: 'https', port: 8443 }], endpoints: [{ ip: '10.0.0.1', pod: 'payments-1' }, { ip: '10.0.0.3', pod: 'canary-1' }] }),
        ],
      });
      const at = (port: number): EndpointsResource['endpoints'] => [
        { address: `10.0.0.1:${port}`, spiffeId: PAYMENTS },
        { address: `10.0.0.2:${port}`, spiffeId: PAYMENTS },
        { address: `10.0.0.3:${port}`, spiffeId: `spiffe://${TD}/ns/shop/sa/payments-canary` },
      ];
      expect(eps).to.deep.equal({ 'payments.shop': at(15100), 'payments.shop:443': at(15101), 'payments.shop:80': at(15100) });
      expect(Object.keys(eps)).to.deep.equal(['payments.shop', 'payments.shop:443', 'payments.shop:80']);
    });

    it('Should bracket IPv6 addresses and keep namespaces apart', () => {
      const eps = endpointsOf({
        pods: [pod({ ns: 'a', name: 'web-1', ips: ['fd00::1'] }), pod({ ns: 'b', name: 'web-1', ip: '10.1.0.1' })],
        services: [service({ ns: 'a', name: 'web' }), service({ ns: 'b', name: 'web' })],
        slices: [
          endpointSlice(version, { ns: 'a', service: 'web', addressType: 'IPv6', endpoints: [{ ip: 'fd00::1', pod: 'web-1' }] }),
          endpointSlice(version, { ns: 'b', service: 'web', endpoints: [{ ip: '10.1.0.1', pod: 'web-1' }] }),
        ],
      });
      expect(eps['web.a:9001']).to.deep.equal([{ address: '[fd00::1]:15100', spiffeId: `spiffe://${TD}/ns/a/sa/web` }]);
      expect(eps['web.b:9001']).to.deep.equal([{ address: '10.1.0.1:15100', spiffeId: `spiffe://${TD}/ns/b/sa/web` }]);
    });
  });
}

describe('What a workload sees of the Kubernetes endpoints (pure)', () => {
  it('Should add the short names of its own namespace\'s Services only, as DNS resolves them there', () => {
    const r = (name: string): EndpointsResource => ({ service: name, endpoints: [{ address: '10.0.0.1:15100', spiffeId: PAYMENTS }] });
    const qualified = new Map([
      ['payments.shop', r('payments.shop')],
      ['payments.shop:9001', r('payments.shop:9001')],
      ['ledger.finance', r('ledger.finance')],
    ]);
    const shop = namespaceView(qualified, 'shop');
    expect([...shop.keys()].sort()).to.deep.equal(['ledger.finance', 'payments', 'payments.shop', 'payments.shop:9001', 'payments:9001']);
    expect(shop.get('payments:9001')).to.deep.equal({ service: 'payments:9001', endpoints: r('x').endpoints });
    expect([...namespaceView(qualified, 'finance').keys()].sort()).to.deep.equal(['ledger', 'ledger.finance', 'payments.shop', 'payments.shop:9001']);
  });
});
