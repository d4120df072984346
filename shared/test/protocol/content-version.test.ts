import { expect } from 'chai';
import fc from 'fast-check';
import { contentVersion, canonicalJson } from '../../src/protocol/content-version';
import { decodeResource, encodeResource } from '../../src/protocol/resources';
import { AUTHORIZATION_POLICIES_TYPE_URL, PEER_AUTHENTICATION_TYPE_URL, TRUST_BUNDLE_TYPE_URL } from '../../src/protocol/type-urls';

describe('content-hash versions', () => {
  it('gives equal versions for equal content regardless of key and resource order', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.dictionary(fc.string(), fc.jsonValue()), (a, b) => {
        const reordered = Object.fromEntries(Object.entries(a).reverse());
        const v1 = contentVersion([{ name: 'x', body: a }, { name: 'y', body: b }]);
        const v2 = contentVersion([{ name: 'y', body: b }, { name: 'x', body: reordered }]);
        return v1 === v2 && /^[0-9a-f]{16}$/.test(v1);
      }),
    );
  });

  it('changes the version when any value changes', () => {
    const a = contentVersion([{ name: 'default', body: { mode: 'STRICT', portModes: {} } }]);
    const b = contentVersion([{ name: 'default', body: { mode: 'PERMISSIVE', portModes: {} } }]);
    expect(a).to.not.equal(b);
    expect(canonicalJson({ b: 1, a: { d: 2, c: 3 } })).to.equal('{"a":{"c":3,"d":2},"b":1}');
  });
});

describe('resource decoding', () => {
  it('round-trips a well-formed body', () => {
    const body = { mode: 'STRICT', portModes: { '8080': 'PERMISSIVE' } };
    expect(decodeResource(PEER_AUTHENTICATION_TYPE_URL, encodeResource(body))).to.deep.equal(body);
  });

  const bad: Array<[string, string, unknown]> = [
    ['an unknown mTLS mode', PEER_AUTHENTICATION_TYPE_URL, { mode: 'LOOSE', portModes: {} }],
    ['a non-numeric port', PEER_AUTHENTICATION_TYPE_URL, { mode: 'STRICT', portModes: { http: 'STRICT' } }],
    ['a port above 65535, which the sidecar could never listen on (NACKed, not dropped later)', PEER_AUTHENTICATION_TYPE_URL, { mode: 'STRICT', portModes: { '70000': 'STRICT' } }],
    ['port 0', PEER_AUTHENTICATION_TYPE_URL, { mode: 'STRICT', portModes: { '0': 'STRICT' } }],
    ['an empty bundle', TRUST_BUNDLE_TYPE_URL, { trustDomain: 'example.org', rootsPem: [] }],
    ['a bundle root that is not a string', TRUST_BUNDLE_TYPE_URL, { trustDomain: 'example.org', rootsPem: [42] }],
    ['a path normalization Istio does not name', AUTHORIZATION_POLICIES_TYPE_URL, { policies: [], pathNormalization: 'base' }],
    ['a path normalization that is not a string', AUTHORIZATION_POLICIES_TYPE_URL, { policies: [], pathNormalization: null }],
  ];
  for (const [what, type, body] of bad) {
    it(`refuses ${what} with TRELLIS_PROTOCOL_BAD_RESOURCE`, () => {
      expect(() => decodeResource(type as typeof PEER_AUTHENTICATION_TYPE_URL, encodeResource(body))).to.throw().with.property('code', 'TRELLIS_PROTOCOL_BAD_RESOURCE');
    });
  }

  it('reads AuthorizationPolicies with each of Istio\'s path normalizations, and without one', () => {
    for (const pathNormalization of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES']) {
      expect(decodeResource(AUTHORIZATION_POLICIES_TYPE_URL, encodeResource({ policies: [], pathNormalization }))).to.deep.equal({ policies: [], pathNormalization });
    }
    expect(decodeResource(AUTHORIZATION_POLICIES_TYPE_URL, encodeResource({ policies: [] }))).to.deep.equal({ policies: [] });
  });

  it('refuses bytes that are not JSON', () => {
    expect(() => decodeResource(PEER_AUTHENTICATION_TYPE_URL, Buffer.from([0xff, 0x00]))).to.throw().with.property('code', 'TRELLIS_PROTOCOL_BAD_RESOURCE');
  });
});
