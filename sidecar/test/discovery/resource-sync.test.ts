import { expect } from 'chai';
import { encodeResource, silentLogger, TRUST_BUNDLE_TYPE_URL, type DiscoveryRequestInit } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { ResourceSync } from '../../src/discovery/resource-sync';

const NODE = { spiffeId: 'spiffe://a.org/ns/shop/sa/web', namespace: 'shop', labels: {}, service: 'web', inboundPorts: [] };

async function push(body: unknown): Promise<DiscoveryRequestInit> {
  const sync = new ResourceSync({ node: NODE, logger: silentLogger, now: () => 0 });
  sync.on(TRUST_BUNDLE_TYPE_URL, () => undefined);
  const replies: DiscoveryRequestInit[] = [];
  await sync.handle({ type_url: TRUST_BUNDLE_TYPE_URL, version_info: 'v1', nonce: 'n1', resources: [{ name: 'default', body: encodeResource(body) }] }, (r) => replies.push(r));
  expect(replies).to.have.length(1);
  return replies[0]!;
}

describe('Trust bundles received on the discovery stream', () => {
  let a: TestCa;
  let b: TestCa;
  before(async () => {
    a = await TestCa.create('a.org');
    b = await TestCa.create('b.org');
  });

  it('Should ACK a bundle whose own and federated roots are all CA certificates', async () => {
    const reply = await push({ trustDomain: 'a.org', rootsPem: [a.root.pem], federatedRootsPem: { 'b.org': [b.root.pem] } });
    expect(reply.error_detail ?? null).to.equal(null);
  });

  it('Should NACK a bundle whose federated roots hold a certificate that is not a CA, by the same rule the sidecar state applies', async () => {
    const leaf = await b.issueLeaf('spiffe://b.org/ns/x/sa/y');
    const reply = await push({ trustDomain: 'a.org', rootsPem: [a.root.pem], federatedRootsPem: { 'b.org': [leaf.pem] } });
    expect(reply.error_detail?.message).to.contain('TRELLIS_SIDECAR_BAD_BUNDLE');
  });
});
