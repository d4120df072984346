import { expect } from 'chai';
import { TestCa } from '@trellis/testkit';
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  AUTHZ_WIRE_VERSION,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  createLogger,
  silentLogger,
  type ResourceBodies,
  type TypeUrl,
} from '@trellis/shared';
import { SidecarState, wireDiscovery, type DiscoverySource } from './helpers/harness';

type Handler = (resources: ReadonlyArray<{ name: string; body: unknown }>, version: string) => void | Promise<void>;

/** A stand-in for the discovery client: records handlers so a test can push resources through them. */
class FakeDiscovery implements DiscoverySource {
  readonly handlers = new Map<string, Handler>();
  connection?: (c: boolean) => void;
  on<T extends TypeUrl>(typeUrl: T, handler: (resources: ReadonlyArray<{ name: string; body: ResourceBodies[T] }>, version: string) => void | Promise<void>): this {
    this.handlers.set(typeUrl, handler as unknown as Handler);
    return this;
  }
  onConnectionChange(l: (c: boolean) => void): void {
    this.connection = l;
  }
  /** Pushes like the client does: resolves on ACK, rejects (the NACK reason) when the handler throws. */
  async push(typeUrl: string, bodies: unknown[]): Promise<void> {
    await this.handlers.get(typeUrl)!(bodies.map((body, i) => ({ name: `r${i}`, body })), 'v1');
  }
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? 'NO_CODE';
  }
  return undefined;
}

describe('Discovery resources into the sidecar state', () => {
  let ca: TestCa;
  let state: SidecarState;
  let fake: FakeDiscovery;

  before(async () => {
    ca = await TestCa.create('cluster.local');
  });

  beforeEach(() => {
    state = new SidecarState();
    fake = new FakeDiscovery();
    wireDiscovery(fake, state, { logger: silentLogger });
  });

  it('Should warn when the control plane goes away, and only say so quietly when the sidecar is closing the stream itself', () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = createLogger({ component: 'sidecar', sink: { write: (l: string) => void lines.push(JSON.parse(l) as { level: string; msg: string }) } });
    let stopping = false;
    const f = new FakeDiscovery();
    wireDiscovery(f, new SidecarState(), { logger, stopping: () => stopping });
    f.connection!(false);
    expect(lines.map((l) => l.level)).to.deep.equal(['warn']);
    stopping = true;
    f.connection!(false);
    expect(lines[1]).to.deep.include({ level: 'info', msg: 'control plane stream closed: the sidecar is stopping' });
  });

  it('Should register a handler for every resource type the sidecar consumes', () => {
    expect([...fake.handlers.keys()].sort()).to.deep.equal(
      [TRUST_BUNDLE_TYPE_URL, PEER_AUTHENTICATION_TYPE_URL, AUTHORIZATION_POLICIES_TYPE_URL, REVOCATIONS_TYPE_URL, ENDPOINTS_TYPE_URL].sort(),
    );
  });

  it('Should apply a bundle with both roots, and NACK one with a root that is not a CA, keeping the old one', async () => {
    const other = await TestCa.create('cluster.local');
    await fake.push(TRUST_BUNDLE_TYPE_URL, [{ trustDomain: 'cluster.local', rootsPem: [ca.root.pem, other.root.pem] }]);
    const good = state.current().bundle!;
    expect(good.fingerprints).to.have.length(2);
    const leaf = await ca.issueLeaf('spiffe://cluster.local/ns/a/sa/b');
    expect(await codeOf(fake.push(TRUST_BUNDLE_TYPE_URL, [{ trustDomain: 'cluster.local', rootsPem: [leaf.pem] }]))).to.equal('TRELLIS_SIDECAR_BAD_BUNDLE');
    expect(state.current().bundle).to.equal(good);
  });

  it('Should turn string port keys into per-port modes, and take prefer as the key exchange when none is pushed', async () => {
    await fake.push(PEER_AUTHENTICATION_TYPE_URL, [{ mode: 'STRICT', portModes: { '8080': 'PERMISSIVE' } }]);
    expect(state.current().peerAuth).to.deep.equal({ mode: 'STRICT', portModes: { 8080: 'PERMISSIVE' }, keyExchange: 'prefer' });
  });

  it('Should apply the pushed key-exchange policy, and NACK an unknown one, keeping the previous', async () => {
    await fake.push(PEER_AUTHENTICATION_TYPE_URL, [{ mode: 'STRICT', portModes: {}, keyExchange: 'require' }]);
    expect(state.current().peerAuth?.keyExchange).to.equal('require');
    const before = state.current().peerAuth;
    expect(await codeOf(fake.push(PEER_AUTHENTICATION_TYPE_URL, [{ mode: 'STRICT', portModes: {}, keyExchange: 'sometimes' }]))).to.equal('TRELLIS_SIDECAR_BAD_PEER_AUTH');
    expect(state.current().peerAuth).to.equal(before);
  });

  it('Should decode pushed compiled AuthorizationPolicies and NACK an invalid set whole, keeping the previous one', async () => {
    const valid = { namespace: 'shop', name: 'a', creationTimestamp: '2026-01-01T00:00:00Z', action: 'DENY', dryRun: false, rules: [{}] };
    await fake.push(AUTHORIZATION_POLICIES_TYPE_URL, [{ wireVersion: AUTHZ_WIRE_VERSION, policies: [valid] }]);
    const before = state.current().authz!;
    expect(before.policies).to.have.length(1);
    const invalid = { ...valid, name: 'b', action: 'MAYBE' };
    expect(await codeOf(fake.push(AUTHORIZATION_POLICIES_TYPE_URL, [{ wireVersion: AUTHZ_WIRE_VERSION, policies: [valid, invalid] }]))).to.equal('TRELLIS_POLICY_WIRE_FIELD');
    expect(state.current().authz).to.equal(before);
  });

  it('Should apply the pushed path normalization, run BASE when none is pushed, and NACK an unknown one keeping the previous state', async () => {
    await fake.push(AUTHORIZATION_POLICIES_TYPE_URL, [{ policies: [] }]);
    expect(state.current().authz!.pathNormalization, 'a control plane that sends none leaves the sidecar on BASE').to.equal('BASE');
    await fake.push(AUTHORIZATION_POLICIES_TYPE_URL, [{ policies: [], pathNormalization: 'MERGE_SLASHES' }]);
    const merged = state.current().authz!;
    expect(merged.pathNormalization).to.equal('MERGE_SLASHES');
    expect(await codeOf(fake.push(AUTHORIZATION_POLICIES_TYPE_URL, [{ policies: [], pathNormalization: 'none' }]))).to.equal('TRELLIS_SIDECAR_BAD_POLICY');
    expect(state.current().authz).to.equal(merged);
  });

  it('Should apply revocations and group endpoints by service with their identities', async () => {
    await fake.push(REVOCATIONS_TYPE_URL, [{ serials: ['0A:BC'], spiffeIds: ['spiffe://cluster.local/ns/a/sa/gone'] }]);
    expect([...state.current().revocations.serials]).to.deep.equal(['abc']);
    await fake.push(ENDPOINTS_TYPE_URL, [
      { service: 'cart', endpoints: [{ address: '10.0.0.1:15006', spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart' }, { address: '10.0.0.2:15006', spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart' }] },
      { service: 'web', endpoints: [] },
    ]);
    expect(state.current().endpoints).to.deep.equal({
      cart: { addresses: ['10.0.0.1:15006', '10.0.0.2:15006'], spiffeIds: ['spiffe://cluster.local/ns/shop/sa/cart'] },
      web: { addresses: [], spiffeIds: [] },
    });
    expect(await codeOf(fake.push(ENDPOINTS_TYPE_URL, [{ service: 'cart', endpoints: [{ address: 'nowhere', spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart' }] }]))).to.equal(
      'TRELLIS_SIDECAR_BAD_ENDPOINTS',
    );
    expect(state.current().endpoints.cart!.addresses).to.have.length(2);
  });
});
