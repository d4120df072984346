import { expect } from 'chai';
import { shouldRotate } from '../../src/tls/server-identity';

describe('control plane serving certificate rotation timing', () => {
  const issuedAt = Date.UTC(2026, 0, 1, 12, 0, 0);
  // What the CA issues for a 1-minute TTL: notBefore back-dated 60 s for clock skew.
  const notBefore = new Date(issuedAt - 60_000);
  const notAfter = new Date(issuedAt + 60_000);

  it('Should not rotate a fresh one-minute certificate whose notBefore is back-dated', () => {
    expect(shouldRotate(issuedAt + 1000, notBefore, notAfter, issuedAt)).to.equal(false);
  });

  it('Should rotate once half of the lifetime since installation has passed', () => {
    expect(shouldRotate(issuedAt + 29_000, notBefore, notAfter, issuedAt)).to.equal(false);
    expect(shouldRotate(issuedAt + 30_000, notBefore, notAfter, issuedAt)).to.equal(true);
  });

  it('Should count from notBefore when the certificate was installed before it became valid', () => {
    const nb = new Date(issuedAt);
    const na = new Date(issuedAt + 3600_000);
    expect(shouldRotate(issuedAt + 1799_000, nb, na, issuedAt - 5000)).to.equal(false);
    expect(shouldRotate(issuedAt + 1800_000, nb, na, issuedAt - 5000)).to.equal(true);
  });

  it('Should rotate at once when the validity window is empty or inverted', () => {
    expect(shouldRotate(issuedAt, notAfter, notBefore, issuedAt)).to.equal(true);
  });
});
