import { expect } from 'chai';
import { TestCa } from '@trellis/testkit';
import { hasErrorCode } from '@trellis/shared';
import { SidecarState, makeCredentials, makeTrustBundle, readiness } from './helpers/harness';
import { credentialsFrom } from './helpers/fixture';

const ID = 'spiffe://cluster.local/ns/shop/sa/web';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('SidecarState', () => {
  let ca: TestCa;
  before(async () => {
    ca = await TestCa.create('cluster.local');
  });

  it('Should swap the whole snapshot and tell listeners which parts changed', async () => {
    const st = new SidecarState();
    const seen: string[][] = [];
    st.onChange((_s, changed) => seen.push([...changed]));
    const first = st.current();
    st.update({ credentials: await credentialsFrom(ca, ID), bundle: makeTrustBundle(ca.root.pem) });
    expect(st.current()).to.not.equal(first);
    expect(Object.isFrozen(st.current())).to.equal(true);
    expect(seen).to.deep.equal([['credentials', 'bundle']]);
  });

  it('Should keep the previous snapshot when any part of an update is invalid', async () => {
    const st = new SidecarState();
    st.update({ bundle: makeTrustBundle(ca.root.pem), peerAuth: { mode: 'STRICT', portModes: {} } });
    const good = st.current();
    const bad: Array<[string, () => unknown, string]> = [
      ['a bad mode', () => st.update({ peerAuth: { mode: 'MAYBE' as never, portModes: {} } }), 'TRELLIS_SIDECAR_BAD_PEER_AUTH'],
      ['a bad port', () => st.update({ peerAuth: { mode: 'STRICT', portModes: { 70000: 'STRICT' } } }), 'TRELLIS_SIDECAR_BAD_PEER_AUTH'],
      ['an empty bundle', () => st.update({ bundle: { rootsPem: [], fingerprints: [] } }), 'TRELLIS_SIDECAR_BAD_BUNDLE'],
      ['a root that does not parse', () => st.update({ bundle: { rootsPem: [ca.root.pem, 'junk'], fingerprints: [] } }), 'TRELLIS_SIDECAR_BAD_BUNDLE'],
      ['a non-hex revoked serial', () => st.update({ revocations: { serials: new Set(['zz']), spiffeIds: new Set() } }), 'TRELLIS_SIDECAR_BAD_REVOCATIONS'],
      ['an endpoint without a port', () => st.update({ endpoints: { web: { addresses: ['10.0.0.1'], spiffeIds: [ID] } } }), 'TRELLIS_SIDECAR_BAD_ENDPOINTS'],
      ['an endpoint port above 65535', () => st.update({ endpoints: { web: { addresses: ['10.0.0.1:99999'], spiffeIds: [ID] } } }), 'TRELLIS_SIDECAR_BAD_ENDPOINTS'],
      ['an endpoint host with a slash', () => st.update({ endpoints: { web: { addresses: ['10.0.0.1/8:80'], spiffeIds: [ID] } } }), 'TRELLIS_SIDECAR_BAD_ENDPOINTS'],
      ['a valid part next to a bad one', () => st.update({ peerAuth: { mode: 'DISABLE', portModes: {} }, endpoints: { web: { addresses: ['a:1'], spiffeIds: ['not-spiffe'] } } }), 'TRELLIS_SIDECAR_BAD_ENDPOINTS'],
    ];
    for (const [what, fn, code] of bad) {
      expect(codeOf(fn), what).to.equal(code);
      expect(st.current(), what).to.equal(good);
    }
  });

  it('Should refuse endpoint and revoked identities that the SPIFFE-ID spec forbids, as the shared parser does', () => {
    const st = new SidecarState();
    const forbidden = ['spiffe://td/ns/a/sa/b%41', 'spiffe://td/ns/a/sa/~b', 'spiffe://td/ns/a/sa/b:c', "spiffe://td/ns/a/sa/b'c", 'spiffe://td/ns/a/sa/b;c', 'spiffe://td/ns/a/sa/b@c'];
    for (const id of forbidden) {
      expect(codeOf(() => st.update({ endpoints: { web: { addresses: ['a:1'], spiffeIds: [id] } } })), id).to.equal('TRELLIS_SIDECAR_BAD_ENDPOINTS');
      expect(codeOf(() => st.update({ revocations: { serials: new Set(), spiffeIds: new Set([id]) } })), id).to.equal('TRELLIS_SIDECAR_BAD_REVOCATIONS');
    }
    for (const id of ['spiffe://Td/ns/a/sa/b', 'spiffe://td/ns/a/sa/b/', 'spiffe://td/ns//sa/b']) {
      expect(codeOf(() => st.update({ revocations: { serials: new Set(), spiffeIds: new Set([id]) } })), id).to.equal('TRELLIS_SIDECAR_BAD_REVOCATIONS');
    }
    st.update({ endpoints: { web: { addresses: ['a:1'], spiffeIds: ['spiffe://td/ns/a/sa/b.c_d-E'] } }, revocations: { serials: new Set(), spiffeIds: new Set(['spiffe://td/ns/a/sa/b']) } });
  });

  it('Should refuse credentials whose leaf was not issued for the key', async () => {
    const a = await ca.issueLeaf(ID);
    const b = await ca.issueLeaf(ID);
    let err: unknown;
    try {
      makeCredentials(a.key.keyPem, b.chainPem);
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_SIDECAR_KEY_MISMATCH')).to.equal(true);
  });

  it('Should be ready only with a valid SVID, a bundle and a policy', async () => {
    const st = new SidecarState();
    const now = new Date();
    expect(readiness(st.current(), now).ready).to.equal(false);
    st.update({ credentials: await credentialsFrom(ca, ID) });
    expect(readiness(st.current(), now).reason).to.match(/bundle/);
    st.update({ bundle: makeTrustBundle(ca.root.pem) });
    expect(readiness(st.current(), now).reason).to.match(/policy/);
    st.update({ peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    expect(readiness(st.current(), now)).to.deep.equal({ ready: true, reason: 'ready' });
    expect(readiness(st.current(), new Date(Date.now() + 2 * 3600_000)).ready).to.equal(false);
  });
});
