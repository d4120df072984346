import { expect } from 'chai';
import { shouldActivateNextIntermediate, shouldPrepareNextIntermediate } from '../../src/lifecycle/rotation-timing';
import { classifyExpiry, DEFAULT_THRESHOLDS, humanSeconds, worstStatus } from '../../src/lifecycle/expiry-check';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const d = (days: number): Date => new Date(T0 + days * DAY);
const current = { notBefore: d(0), notAfter: d(360) };

describe('intermediate rotation timing', () => {
  const prepareCases: Array<[string, number, boolean]> = [
    ['on the first day', 0, false],
    ['one second before half life', 180 - 1 / 86_400, false],
    ['at half life', 180, true],
    ['after expiry', 400, true],
  ];
  for (const [name, day, want] of prepareCases) {
    it(`prepares the next intermediate ${want ? '' : 'not '}${name}`, () => {
      expect(shouldPrepareNextIntermediate(d(day), current).yes).to.equal(want);
    });
  }

  it('says when preparation will be due while it is not yet', () => {
    expect(shouldPrepareNextIntermediate(d(10), current).at?.toISOString()).to.equal(d(180).toISOString());
  });

  const next = { notBefore: d(180), notAfter: d(540) };
  const activateCases: Array<[string, number, { notBefore: Date; notAfter: Date }, boolean]> = [
    ['before five sixths of the current life', 299, next, false],
    ['at five sixths of the current life', 300, next, true],
    ['once the current one expired', 361, next, true],
    ['when the next one is not valid yet', 300, { notBefore: d(301), notAfter: d(700) }, false],
    ['when the next one expires before the current one', 359, { notBefore: d(180), notAfter: d(359.5) }, false],
    ['when the next one has already expired', 365, { notBefore: d(180), notAfter: d(364) }, false],
  ];
  for (const [name, day, n, want] of activateCases) {
    it(`${want ? 'activates' : 'does not activate'} the next intermediate ${name}`, () => {
      const r = shouldActivateNextIntermediate(d(day), current, n);
      expect(r.yes, r.reason).to.equal(want);
      expect(r.reason).to.be.a('string').and.not.equal('');
    });
  }
});

describe('expiry classification', () => {
  const cases: Array<[string, 'root' | 'intermediate' | 'leaf', number, number, number, string]> = [
    // kind, notBefore (days), notAfter (days), now (days), status
    ['a fresh root is ok', 'root', 0, 3650, 1, 'ok'],
    ['a root 100 days from expiry warns', 'root', 0, 3650, 3550, 'warn'],
    ['a root 20 days from expiry is critical', 'root', 0, 3650, 3630, 'critical'],
    ['an intermediate 30 days from expiry warns', 'intermediate', 0, 365, 335, 'warn'],
    ['an intermediate 10 days from expiry is critical', 'intermediate', 0, 365, 355, 'critical'],
    ['an expired intermediate is expired', 'intermediate', 0, 365, 366, 'expired'],
    ['a certificate not valid yet is critical', 'intermediate', 10, 365, 5, 'critical'],
    ['a one-hour leaf with 50 minutes left is ok', 'leaf', 0, 1 / 24, 10 / 1440, 'ok'],
    ['a one-hour leaf with 15 minutes left warns', 'leaf', 0, 1 / 24, 45 / 1440, 'warn'],
    ['a one-hour leaf with 5 minutes left is critical', 'leaf', 0, 1 / 24, 55 / 1440, 'critical'],
  ];
  for (const [name, kind, nb, na, now, want] of cases) {
    it(`says ${name}`, () => {
      expect(classifyExpiry(d(now), d(nb), d(na), DEFAULT_THRESHOLDS[kind]).status).to.equal(want);
    });
  }

  it('orders statuses so the worst wins', () => {
    expect(worstStatus('ok', 'warn')).to.equal('warn');
    expect(worstStatus('expired', 'critical')).to.equal('expired');
    expect(worstStatus('critical', 'ok')).to.equal('critical');
  });

  it('prints durations with at most two units', () => {
    expect(humanSeconds(3 * 86_400 + 4 * 3600 + 5)).to.equal('3d 4h');
    expect(humanSeconds(25 * 60)).to.equal('25m');
    expect(humanSeconds(-5)).to.equal('0s');
  });
});
