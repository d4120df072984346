import { expect } from 'chai';
import { DEFAULT_ROTATION, nextRotation, retryDelay } from './helpers/harness';

const T0 = Date.UTC(2026, 0, 1);
const at = (ms: number): Date => new Date(T0 + ms);
const HOUR = 3600_000;

describe('nextRotation', () => {
  const cases: Array<[string, number, number, number]> = [
    // [name, random, now offset, expected offset] for a 1 h certificate from T0
    ['at half-life with centred randomness', 0.5, 0, 30 * 60_000],
    ['at 40% of the lifetime with the smallest random', 0, 0, 24 * 60_000],
    ['just under 60% of the lifetime with the largest random', 0.999999, 0, Math.round(0.5 * HOUR + 0.1 * HOUR * (2 * 0.999999 - 1))],
    ['now when the computed time has passed', 0.5, 45 * 60_000, 45 * 60_000],
    ['at notAfter or now when already expired', 0.5, 2 * HOUR, 2 * HOUR],
  ];
  for (const [name, random, now, expected] of cases) {
    it(`Should renew ${name}`, () => {
      expect(nextRotation(at(now), at(0), at(HOUR), DEFAULT_ROTATION, random).getTime()).to.be.closeTo(T0 + expected, 1);
    });
  }

  it('Should honour a configured fraction and jitter', () => {
    expect(nextRotation(at(0), at(0), at(HOUR), { fraction: 0.8, jitter: 0 }, 0.3).getTime()).to.equal(T0 + 0.8 * HOUR);
  });

  it('Should always land within [now, notAfter] for any random in [0, 1)', () => {
    for (let i = 0; i < 200; i++) {
      const r = i / 200;
      const t = nextRotation(at(0), at(0), at(HOUR), DEFAULT_ROTATION, r).getTime();
      expect(t).to.be.within(T0 + 0.4 * HOUR, T0 + 0.6 * HOUR);
    }
  });
});

describe('retryDelay', () => {
  it('Should grow exponentially and stay under the 30 s cap', () => {
    expect(retryDelay(0, 1)).to.equal(1000);
    expect(retryDelay(3, 1)).to.equal(8000);
    expect(retryDelay(20, 1)).to.equal(30_000);
    expect(retryDelay(20, 0)).to.equal(15_000);
  });
});
