import { expect } from 'chai';
import { formatHostPort, parseHostPort } from '../../src/net/host-port';

describe('host:port addresses (one parser for every flag, field and endpoint)', () => {
  const good: Array<[string, string | undefined, { host: string; port: number }]> = [
    ['127.0.0.1:15000', undefined, { host: '127.0.0.1', port: 15000 }],
    ['[::1]:8443', undefined, { host: '::1', port: 8443 }],
    ['cart.shop.svc:9001', undefined, { host: 'cart.shop.svc', port: 9001 }],
    ['0.0.0.0:0', undefined, { host: '0.0.0.0', port: 0 }],
    ['15000', '127.0.0.1', { host: '127.0.0.1', port: 15000 }],
    ['[::]:65535', '127.0.0.1', { host: '::', port: 65535 }],
  ];
  for (const [text, defaultHost, want] of good) {
    it(`Should read ${text}${defaultHost ? ` (default host ${defaultHost})` : ''} and print it back`, () => {
      const hp = parseHostPort(text, defaultHost === undefined ? {} : { defaultHost });
      expect(hp).to.deep.equal(want);
      if (typeof hp !== 'string' && text.includes(':')) expect(formatHostPort(hp.host, hp.port)).to.equal(text);
    });
  }

  const bad: Array<[string, string, string | undefined]> = [
    ['a port above 65535', '10.0.0.1:99999', undefined],
    ['a bare port where no host is implied', '15000', undefined],
    ['an unbracketed IPv6 address', '::1:80', undefined],
    ['brackets around something that is not an IPv6 address', '[not an ip]:80', undefined],
    ['a host with a slash (a URL or a CIDR)', 'http://a:80', undefined],
    ['a host with white space', 'a b:80', undefined],
    ['no port', '10.0.0.1:', undefined],
    ['an empty host', ':80', undefined],
    ['a six-digit port', '000080', '127.0.0.1'],
  ];
  for (const [what, text, defaultHost] of bad) {
    it(`Should refuse ${what} (${JSON.stringify(text)}) with a reason`, () => {
      expect(parseHostPort(text, defaultHost === undefined ? {} : { defaultHost })).to.be.a('string');
    });
  }
});
