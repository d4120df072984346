/**
 * Who may read the dashboard, decided purely over the facts of a request:
 * the token (in the URL, then the cookie), the Host (DNS rebinding) and,
 * for the WebSocket, the Origin. Every case fails closed.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { acceptedAdminHosts, type MeshView } from '@trellis/control-plane';
import { cookieValue, decideDashboardRequest, isOwnOrigin, newDashboardToken, tokensEqual, type DashboardRequestFacts } from '../src/dashboard/dashboard-access';
import { DashboardErrorCode } from '../src/dashboard/dashboard-error';
import { changedSections } from '../src/dashboard/dashboard-messages';

const TOKEN = 'a'.repeat(32);
const HOSTS = acceptedAdminHosts('127.0.0.1', 15080);
const page = (f: Partial<DashboardRequestFacts>): DashboardRequestFacts => ({ host: '127.0.0.1:15080', queryToken: null, cookie: undefined, websocket: false, ...f });
const decide = (f: Partial<DashboardRequestFacts>): ReturnType<typeof decideDashboardRequest> => decideDashboardRequest(page(f), TOKEN, HOSTS);

describe('dashboard access (pure)', () => {
  it('Should make a fresh 128-bit hex token each time', () => {
    const a = newDashboardToken();
    expect(a).to.match(/^[0-9a-f]{32}$/);
    expect(newDashboardToken()).to.not.equal(a);
  });

  it('Should compare tokens whole, whatever their lengths', () => {
    expect(tokensEqual(TOKEN, TOKEN)).to.equal(true);
    expect(tokensEqual(TOKEN, TOKEN.slice(0, 31))).to.equal(false);
    expect(tokensEqual(TOKEN, TOKEN + 'a')).to.equal(false);
    expect(tokensEqual(TOKEN, 'b' + TOKEN.slice(1))).to.equal(false);
    expect(tokensEqual('', '')).to.equal(true);
  });

  it('Should read the named cookie only', () => {
    expect(cookieValue(`x=1; trellis_dashboard=${TOKEN}; y=2`, 'trellis_dashboard')).to.equal(TOKEN);
    expect(cookieValue('trellis_dashboard_other=1', 'trellis_dashboard')).to.equal(null);
    expect(cookieValue(undefined, 'trellis_dashboard')).to.equal(null);
  });

  const table: Array<[string, Partial<DashboardRequestFacts>, ReturnType<typeof decideDashboardRequest>]> = [
    ['the token in the URL: allowed, and the cookie set', { queryToken: TOKEN }, { allow: true, setCookie: true }],
    ['the token in the cookie: allowed', { cookie: `trellis_dashboard=${TOKEN}` }, { allow: true, setCookie: false }],
    ['no token', {}, { allow: false, status: 401, reason: 'no dashboard token: open the URL trellis printed, with its ?token=' }],
    ['a wrong token in the URL', { queryToken: 'b'.repeat(32) }, { allow: false, status: 401, reason: 'wrong dashboard token' }],
    ['a wrong cookie', { cookie: 'trellis_dashboard=x' }, { allow: false, status: 401, reason: 'wrong dashboard token' }],
    ['another name for this address (DNS rebinding)', { host: 'evil.example:15080', queryToken: TOKEN }, { allow: false, status: 421, reason: 'Host "evil.example:15080" is not this dashboard\'s address' }],
    ['no Host', { host: undefined, queryToken: TOKEN }, { allow: false, status: 421, reason: 'Host "" is not this dashboard\'s address' }],
    ['localhost, a loopback name', { host: 'localhost:15080', queryToken: TOKEN }, { allow: true, setCookie: true }],
    ['the WebSocket from its own origin', { websocket: true, cookie: `trellis_dashboard=${TOKEN}`, origin: 'http://127.0.0.1:15080' }, { allow: true, setCookie: false }],
    ['the WebSocket from another site', { websocket: true, cookie: `trellis_dashboard=${TOKEN}`, origin: 'http://evil.example' }, { allow: false, status: 403, reason: 'Origin "http://evil.example" is not this dashboard' }],
    ['the WebSocket from another port of 127.0.0.1 (the cookie is sent there too)', { websocket: true, cookie: `trellis_dashboard=${TOKEN}`, origin: 'http://127.0.0.1:8888' }, { allow: false, status: 403, reason: 'Origin "http://127.0.0.1:8888" is not this dashboard' }],
    ['the WebSocket without an Origin', { websocket: true, queryToken: TOKEN }, { allow: false, status: 403, reason: 'Origin "" is not this dashboard' }],
    ['the WebSocket from an opaque origin', { websocket: true, queryToken: TOKEN, origin: 'null' }, { allow: false, status: 403, reason: 'Origin "null" is not this dashboard' }],
    ['the WebSocket from its origin but without the token', { websocket: true, origin: 'http://127.0.0.1:15080' }, { allow: false, status: 401, reason: 'no dashboard token: open the URL trellis printed, with its ?token=' }],
  ];
  for (const [what, facts, want] of table) {
    it(`Should decide: ${what}`, () => {
      expect(decide(facts)).to.deep.equal(want);
    });
  }

  it('Should take an Origin as its own only when it is http:// and exactly the accepted Host', () => {
    expect(isOwnOrigin('http://127.0.0.1:15080', '127.0.0.1:15080')).to.equal(true);
    expect(isOwnOrigin('HTTP://LOCALHOST:15080', 'localhost:15080')).to.equal(true);
    expect(isOwnOrigin('https://127.0.0.1:15080', '127.0.0.1:15080')).to.equal(false);
    expect(isOwnOrigin('http://127.0.0.1:15080/', '127.0.0.1:15080')).to.equal(false);
    expect(isOwnOrigin(undefined, '127.0.0.1:15080')).to.equal(false);
  });

  it('Should document every TRELLIS_DASHBOARD_* code in docs/errors.md', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    expect(Object.values(DashboardErrorCode).filter((c) => !doc.includes('`' + c + '`'))).to.deep.equal([]);
  });
});

describe('dashboard mesh diffs', () => {
  const view = (over: Partial<MeshView> = {}): MeshView => ({ generatedAt: '2030-01-01T00:00:00.000Z', trustDomain: 't', workloads: [], graph: { nodes: [], edges: [], windowSeconds: 0 }, policies: { servable: true, version: 'v', problems: [] }, ca: { error: 'x' }, revocations: { serials: [], spiffeIds: [] }, latestEvent: 0, ...over });
  it('Should send every section first, then only the sections that changed, and nothing when only the time moved', () => {
    expect(Object.keys(changedSections(null, view())!).sort()).to.deep.equal(['ca', 'graph', 'latestEvent', 'policies', 'revocations', 'trustDomain', 'workloads']);
    expect(changedSections(view(), view({ generatedAt: '2030-01-01T00:00:01.000Z' }))).to.equal(null);
    expect(changedSections(view(), view({ revocations: { serials: [], spiffeIds: ['spiffe://t/x'] } }))).to.deep.equal({ revocations: { serials: [], spiffeIds: ['spiffe://t/x'] } });
  });
});
