import { expect } from 'chai';
import { readRequestTarget } from './helpers/harness';

/** [method, url, Host (undefined: none), expected view or refusal reason]. Under BASE unless the case says. */
const CASES: Array<[string, string, string | undefined, { path: string; target: string; host?: string; addHost?: string } | 'bad_path' | 'bad_host']> = [
  // origin-form: the path normalized, the query as sent
  ['GET', '/a/./b/../c?x=/../y&z=%2e', 'server', { path: '/a/c', target: '/a/c?x=/../y&z=%2e', host: 'server' }],
  ['GET', '/%61dmin?', 'server', { path: '/admin', target: '/admin?', host: 'server' }],
  ['GET', '/', undefined, { path: '/', target: '/' }],
  // absolute-form: the authority agrees with Host (as hosts compare), the app gets origin-form
  ['GET', 'http://server/admin', 'server', { path: '/admin', target: '/admin', host: 'server' }],
  ['GET', 'HTTP://Server.:8080/x/../admin?q=1', 'server', { path: '/admin', target: '/admin?q=1', host: 'server' }],
  ['GET', 'https://server', 'SERVER:443', { path: '/', target: '/', host: 'SERVER:443' }],
  ['GET', 'http://server?q', 'server', { path: '/', target: '/?q', host: 'server' }],
  ['GET', 'http://server:8080/x', undefined, { path: '/x', target: '/x', host: 'server:8080', addHost: 'server:8080' }],
  ['GET', 'http://[::1]:8080/x', '[::1]', { path: '/x', target: '/x', host: '[::1]' }],
  ['GET', 'http://public.example/admin', 'server', 'bad_host'],
  ['GET', 'http://server.evil/admin', 'server', 'bad_host'],
  ['GET', 'http://user@server/x', 'server', 'bad_host'],
  ['GET', 'http:///x', 'server', 'bad_host'],
  ['GET', 'ftp://server/x', 'server', 'bad_path'],
  // asterisk-form for OPTIONS only; authority-form never (CONNECT does not get here)
  ['OPTIONS', '*', 'server', { path: '*', target: '*', host: 'server' }],
  ['GET', '*', 'server', 'bad_path'],
  ['GET', 'server:80', 'server', 'bad_path'],
  // the Host header must be a host
  ['GET', '/x', 'server/admin', 'bad_host'],
  ['GET', '/x', 'evil@admin.internal', 'bad_host'],
  ['GET', '/x', '%61dmin.internal', 'bad_host'],
  ['GET', '/x', 'a b', 'bad_host'],
  ['GET', '/x', 'caf\u00e9.example', 'bad_host'],
  ['GET', '/x', '', { path: '/x', target: '/x', host: '' }],
  // what cannot be normalized, in the path or the query
  ['GET', '/a%00', 'server', 'bad_path'],
  ['GET', '/a%zz', 'server', 'bad_path'],
  ['GET', '/a#frag', 'server', 'bad_path'],
  ['GET', '/a?b#frag', 'server', 'bad_path'],
  ['GET', '/a?b c', 'server', 'bad_path'],
  ['GET', '/a?\u0000', 'server', 'bad_path'],
];

describe('One view of a request target (what an /http port judges and forwards)', () => {
  for (const [method, url, host, want] of CASES) {
    it(`Should ${typeof want === 'string' ? `refuse ${method} ${JSON.stringify(url)} with Host ${JSON.stringify(host)} (${want})` : `read ${method} ${JSON.stringify(url)} with Host ${JSON.stringify(host)} as ${JSON.stringify(want.target)}`}`, () => {
      const got = readRequestTarget(method, url, host, 'BASE');
      if (typeof want === 'string') {
        expect(got.ok, JSON.stringify(got)).to.equal(false);
        if (!got.ok) {
          expect(got.reason).to.equal(want);
          expect(got.detail).to.be.a('string').and.not.equal('');
        }
      } else {
        expect(got).to.deep.equal({ ok: true, ...want });
      }
    });
  }

  it('Should normalize under the mode it is given', () => {
    expect(readRequestTarget('GET', '//a/./b', 'h', 'NONE')).to.deep.include({ ok: true, path: '//a/./b' });
    expect(readRequestTarget('GET', '//a/./b', 'h', 'BASE')).to.deep.include({ ok: true, path: '//a/b' });
    expect(readRequestTarget('GET', '//a/./b', 'h', 'MERGE_SLASHES')).to.deep.include({ ok: true, path: '/a/b' });
    expect(readRequestTarget('GET', '/a%2F..%2Fb', 'h', 'DECODE_AND_MERGE_SLASHES')).to.deep.include({ ok: true, path: '/b' });
    expect(readRequestTarget('GET', '/a\\b', 'h', 'NONE')).to.deep.include({ ok: false, reason: 'bad_path' });
  });
});
