import { expect } from 'chai';
import { ipInBlock, matchString, parseIp, parseIpBlock } from '../../src';

describe('policy string matching', () => {
  const cases: Array<[string, string, boolean]> = [
    ['abc', 'abc', true],
    ['abc', 'abcd', false],
    ['abc*', 'abcd', true],
    ['abc*', 'xabc', false],
    ['*abc', 'xabc', true],
    ['*abc', 'abcx', false],
    ['*', '', true],
    ['*', 'anything', true],
  ];
  for (const [pattern, value, want] of cases) {
    it(`${want ? 'matches' : 'does not match'} "${value}" against "${pattern}"`, () => expect(matchString(pattern, value)).to.equal(want));
  }
  it('matches hosts without case when asked', () => {
    expect(matchString('*.Example.com', 'a.EXAMPLE.com', true)).to.equal(true);
    expect(matchString('*.Example.com', 'a.EXAMPLE.com')).to.equal(false);
  });
});

describe('ipBlocks', () => {
  const inBlock: Array<[string, string, boolean]> = [
    ['10.1.2.3', '10.0.0.0/8', true],
    ['11.1.2.3', '10.0.0.0/8', false],
    ['1.2.3.4', '1.2.3.4', true],
    ['1.2.3.5', '1.2.3.4', false],
    ['192.168.1.255', '192.168.1.0/24', true],
    ['0.0.0.1', '0.0.0.0/0', true],
    ['::ffff:10.0.0.1', '10.0.0.0/8', true],
    ['fd00::1', 'fd00::/8', true],
    ['fe80::1', 'fd00::/8', false],
    ['2001:db8::1', '2001:db8::/32', true],
    ['2001:db9::1', '2001:db8::/32', false],
    ['10.0.0.1', 'fd00::/8', false],
    ['not-an-ip', '0.0.0.0/0', false],
  ];
  for (const [ip, block, want] of inBlock) {
    it(`${want ? 'finds' : 'does not find'} ${ip} in ${block}`, () => expect(ipInBlock(ip, block)).to.equal(want));
  }
  it('refuses malformed addresses and blocks', () => {
    for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', '1::2::3', '1:2:3:4:5:6:7:8:9', 'g::1']) expect(parseIp(bad), bad).to.equal(undefined);
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/a']) expect(parseIpBlock(bad), bad).to.equal(undefined);
    expect(parseIp('::')).to.deep.equal({ family: 6, value: 0n });
  });
});
