import { expect } from 'chai';
import { renderStatus, sumMetric, syncWord } from '../src/up/status-view';

const STATS = `# HELP trellis_refusals_total refused
trellis_connections_total{direction="inbound"} 7
trellis_connections_total{direction="outbound"} 4
trellis_refusals_total{direction="inbound",reason="authz_denied"} 2
trellis_refusals_total{direction="inbound",reason="plaintext"} 1
trellis_refusals_total{direction="outbound",reason="handshake_failed"} 5
`;

describe('trellis up live status', () => {
  it('Should sum a metric over the series whose labels match', () => {
    expect(sumMetric(STATS, /^trellis_refusals_total$/, /direction="inbound"/)).to.equal(3);
    expect(sumMetric(STATS, /^trellis_connections_total$/)).to.equal(11);
    expect(sumMetric('', /^x$/)).to.equal(0);
  });

  it('Should name the sync state from the sidecar config dump, failing towards not synced', () => {
    const cp = (connected: boolean, states: string[]) => ({ controlPlane: { connection: { connected }, sync: Object.fromEntries(states.map((st, i) => [`t${i}`, { state: st }])) } });
    expect(syncWord(cp(true, ['ACKED', 'ACKED']))).to.equal('SYNCED');
    expect(syncWord(cp(true, ['ACKED', 'NACKED']))).to.equal('NACKED');
    expect(syncWord(cp(true, ['ACKED', 'SENT']))).to.equal('SYNCING');
    expect(syncWord(cp(false, ['ACKED']))).to.equal('OFFLINE');
    expect(syncWord(cp(true, []))).to.equal('SYNCING');
    expect(syncWord({})).to.equal('UNKNOWN');
  });

  it('Should render one row per workload with the expiry as a countdown', () => {
    const now = new Date(Date.UTC(2026, 0, 1, 12, 0, 0));
    const text = renderStatus([
      { name: 'payments', ready: true, identity: 'spiffe://td/ns/shop/sa/payments', expiresInS: 95, sync: 'SYNCED', allowed: 4, refused: 3 },
      { name: 'ledger', ready: false, identity: '-', expiresInS: -2, sync: 'OFFLINE', allowed: 0, refused: 0 },
    ], now);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).to.contain('12:00:00');
    expect(lines[2]).to.match(/^payments\s+yes\s+spiffe:\/\/td\/ns\/shop\/sa\/payments\s+1m35s\s+SYNCED\s+4\s+3$/);
    expect(lines[3]).to.match(/^ledger\s+NO\s+-\s+EXPIRED\s+OFFLINE\s+0\s+0$/);
  });
});
