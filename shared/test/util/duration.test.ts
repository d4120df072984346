import { expect } from 'chai';
import { DurationError, formatDuration, parseDuration, parseDurationSeconds } from '../../src/util/duration';

describe('Durations', () => {
  const good: Array<[string, number]> = [
    ['90s', 90_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['2h30m', 9_000_000],
    ['1d', 86_400_000],
    ['500ms', 500],
    ['1m30s', 90_000],
    ['0s', 0],
  ];
  for (const [text, ms] of good) {
    it(`Should read "${text}" as ${ms} ms`, () => {
      expect(parseDuration(text)).to.equal(ms);
    });
  }

  for (const text of ['', '60', '1x', '1 h', '-5m', '1.5h', 'h', '1hh', '1h ', 'PT1H', '99999999999999999999d']) {
    it(`Should refuse "${text}" naming the field`, () => {
      try {
        parseDuration(text, '--ttl');
        expect.fail('accepted');
      } catch (err) {
        expect(err).to.be.instanceOf(DurationError);
        expect((err as DurationError).code).to.equal('TRELLIS_DURATION_INVALID');
        expect((err as DurationError).details.field).to.equal('--ttl');
      }
    });
  }

  it('Should give whole seconds and refuse a sub-second remainder', () => {
    expect(parseDurationSeconds('1h')).to.equal(3600);
    expect(() => parseDurationSeconds('1500ms')).to.throw(DurationError);
  });

  it('Should format what it parses back to the same value', () => {
    for (const ms of [0, 500, 90_000, 9_000_000, 86_400_000 + 1500]) expect(parseDuration(formatDuration(ms))).to.equal(ms);
    expect(formatDuration(5_400_000)).to.equal('1h30m');
  });
});
