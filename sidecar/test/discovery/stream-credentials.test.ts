import { expect } from 'chai';
import { credentialsExhausted, reconnectBackoff, shouldMoveStream, streamCredentials, type ClientCredentials } from '../../src/discovery/stream-credentials';

const NOW = Date.parse('2026-01-01T00:00:00Z');
const svid = (leftMs: number): ClientCredentials => ({ keyPem: 'k', chainPem: 'c', notAfter: new Date(NOW + leftMs) });

describe('Which credential a discovery stream uses, and when none is left', () => {
  it('Should open a stream with an SVID only while it has more than 5 s left, else with the token', () => {
    expect(streamCredentials(svid(60_000), NOW)).to.not.equal(null);
    expect(streamCredentials(svid(5_000), NOW)).to.equal(null);
    expect(streamCredentials(null, NOW)).to.equal(null);
  });

  const cases: Array<[string, Parameters<typeof shouldMoveStream>[0], ClientCredentials | null, boolean]> = [
    ['Should move a token-authenticated stream to a usable SVID', { kind: 'token', joinToken: true }, svid(60_000), true],
    ['Should move a stream opened with an SVID that expires before the new one', { kind: 'svid', notAfterMs: NOW + 30_000 }, svid(60_000), true],
    ['Should not move a stream already opened with that SVID', { kind: 'svid', notAfterMs: NOW + 60_000 }, svid(60_000), false],
    ['Should not move without a usable SVID', { kind: 'token', joinToken: true }, null, false],
  ];
  for (const [title, open, usable, want] of cases) it(title, () => expect(shouldMoveStream(open, usable)).to.equal(want));

  it('Should find no credential left only for a join token refused as spent or expired, with no usable SVID', () => {
    const join = { kind: 'token', joinToken: true } as const;
    expect(credentialsExhausted(join, 'TRELLIS_CP_TOKEN_SPENT', null)).to.equal(true);
    expect(credentialsExhausted(join, 'TRELLIS_CP_TOKEN_EXPIRED', null)).to.equal(true);
    expect(credentialsExhausted(join, 'TRELLIS_CP_TOKEN_SPENT', svid(60_000)), 'an SVID can still open a stream').to.equal(false);
    expect(credentialsExhausted(join, 'TRELLIS_CP_OVERLOADED', null)).to.equal(false);
    expect(credentialsExhausted({ kind: 'token', joinToken: false }, 'TRELLIS_CP_TOKEN_EXPIRED', null), 'kubelet rotates a Kubernetes token').to.equal(false);
    expect(credentialsExhausted({ kind: 'svid', notAfterMs: NOW }, 'TRELLIS_CP_CREDENTIAL_EXPIRED', null)).to.equal(false);
  });

  it('Should retry at most every 5 s while it holds no valid certificate (it serves nothing meanwhile), on its own cap otherwise', () => {
    const cap = { initialMs: 250, maxMs: 30_000 };
    expect(reconnectBackoff(cap, false)).to.deep.equal({ initialMs: 250, maxMs: 5_000 });
    expect(reconnectBackoff(cap, true)).to.deep.equal(cap);
    expect(reconnectBackoff({ initialMs: 20, maxMs: 100 }, false)).to.deep.equal({ initialMs: 20, maxMs: 100 });
  });
});
