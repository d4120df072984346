import { expect } from 'chai';
import type { Endpoint } from '@trellis/shared';
import { ProxyRegistry } from '../../src/discovery/proxy-registry';
import type { StreamSession } from '../../src/discovery/stream-session';

let nextId = 1;
/** A stream as the registry sees it: a node with a service, a peer, the endpoints it serves. */
function session(service: string, spiffeId: string, addresses: string[], serialHex = 'ab'): StreamSession {
  const served: Endpoint[] = addresses.map((address) => ({ address, spiffeId }));
  return {
    id: nextId++,
    node: { service },
    peer: { spiffeId, method: 'svid', audit: { serialHex } },
    servedEndpoints: () => served,
    status: () => ({}),
  } as unknown as StreamSession;
}

function listed(r: ProxyRegistry, service: string): string[] {
  return (r.endpoints().get(service)?.endpoints ?? []).map((e) => `${e.address} ${e.spiffeId}`);
}

describe('ProxyRegistry endpoints of streams that come and go', () => {
  const CART = 'spiffe://td/ns/shop/sa/cart';

  it('Should keep a lost stream\'s endpoints listed until its grace period ends, then withdraw them', () => {
    const r = new ProxyRegistry();
    const s = session('cart', CART, ['10.0.0.1:8080']);
    expect(r.add(s)).to.equal(true);
    expect(r.remove(s, 1_000), 'nothing changes for callers when it is lost').to.equal(false);
    expect(listed(r, 'cart')).to.deep.equal([`10.0.0.1:8080 ${CART}`]);
    expect(r.nextLingerExpiryMs()).to.equal(1_000);
    expect(r.expireLingering(999)).to.equal(false);
    expect(r.expireLingering(1_000)).to.equal(true);
    expect(listed(r, 'cart')).to.deep.equal([]);
    expect(r.nextLingerExpiryMs()).to.equal(null);
  });

  it('Should withdraw a stream\'s endpoints at once when it ends without a grace period (a goodbye)', () => {
    const r = new ProxyRegistry();
    const s = session('cart', CART, ['10.0.0.1:8080']);
    r.add(s);
    expect(r.remove(s)).to.equal(true);
    expect(listed(r, 'cart')).to.deep.equal([]);
  });

  it('Should let a sidecar that is back replace what lingered: listed once, and its old grace no longer withdraws it', () => {
    const r = new ProxyRegistry();
    const lost = session('cart', CART, ['10.0.0.1:8080']);
    r.add(lost);
    const version = r.endpoints();
    r.remove(lost, 1_000);
    const back = session('cart', CART, ['10.0.0.1:8080']);
    r.add(back);
    expect(listed(r, 'cart')).to.deep.equal([`10.0.0.1:8080 ${CART}`]);
    expect(r.endpoints().get('cart')).to.deep.equal(version.get('cart'));
    expect(r.expireLingering(5_000)).to.equal(false);
    expect(listed(r, 'cart')).to.deep.equal([`10.0.0.1:8080 ${CART}`]);
  });

  it('Should drop the lingering endpoints of a revoked identity or serial at once', () => {
    const r = new ProxyRegistry();
    const a = session('cart', CART, ['10.0.0.1:8080'], 'aa');
    const b = session('cart', 'spiffe://td/ns/shop/sa/cart-canary', ['10.0.0.2:8080'], 'bb');
    r.add(a);
    r.add(b);
    r.remove(a, 60_000);
    r.remove(b, 60_000);
    expect(r.dropRevoked((serial, id) => serial === 'bb' || id === CART)).to.equal(true);
    expect(listed(r, 'cart')).to.deep.equal([]);
  });
});
