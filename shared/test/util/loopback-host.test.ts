import { expect } from 'chai';
import { isLoopbackHost } from '../../src/util/loopback-host';

describe('isLoopbackHost', () => {
  const cases: Array<[string, boolean]> = [
    ['localhost', true],
    ['LOCALHOST', true],
    ['127.0.0.1', true],
    ['127.10.20.30', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['[::]', false],
    ['10.0.0.1', false],
    ['128.0.0.1', false],
    ['127.0.0.256', false],
    ['localhost.attacker.example', false],
    ['127.0.0.1.nip.io', false],
    ['', false],
  ];
  for (const [host, want] of cases) {
    it(`Should say ${JSON.stringify(host)} is ${want ? '' : 'not '}a loopback host`, () => {
      expect(isLoopbackHost(host)).to.equal(want);
    });
  }
});
