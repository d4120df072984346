import { expect } from 'chai';
import { AckTracker } from '../../src/protocol/ack-tracker';

describe('AckTracker (xDS ACK/NACK per stream and type)', () => {
  it('reports NOT_SENT, then STALE after a send, then SYNCED after the ACK with its latency', () => {
    const t = new AckTracker();
    expect(t.snapshot().state).to.equal('NOT_SENT');
    t.recordSent('v1', 'n1', 1000);
    expect(t.snapshot().state).to.equal('STALE');
    expect(t.onRequest({ versionInfo: 'v1', responseNonce: 'n1' }, 1250, true)).to.deep.equal({ kind: 'ack', version: 'v1', latencyMs: 250 });
    expect(t.snapshot()).to.include({ state: 'SYNCED', ackedVersion: 'v1' });
  });

  it('records a NACK and never re-sends the rejected version, but sends the next one', () => {
    const t = new AckTracker();
    t.recordSent('v1', 'n1', 0);
    t.onRequest({ versionInfo: '', responseNonce: 'n1' }, 1, true);
    t.recordSent('v2', 'n2', 2);
    expect(t.onRequest({ versionInfo: 'v1', responseNonce: 'n2', errorDetail: 'bad port' }, 3, true)).to.deep.equal({ kind: 'nack', rejectedVersion: 'v2', detail: 'bad port' });
    expect(t.snapshot()).to.include({ state: 'NACKED', lastError: 'bad port', ackedVersion: 'v1', rejectedVersion: 'v2' });
    expect(t.shouldSend('v2')).to.equal(false);
    expect(t.shouldSend('v3')).to.equal(true);
  });

  it('does not re-send what is in flight or what a reconnecting sidecar says it already holds', () => {
    const inflight = new AckTracker();
    inflight.recordSent('v1', 'n1', 0);
    expect(inflight.shouldSend('v1')).to.equal(false);
    const reconnect = new AckTracker();
    expect(reconnect.onRequest({ versionInfo: 'v7', responseNonce: '' }, 0, false)).to.deep.equal({ kind: 'subscribe', claimedVersion: 'v7' });
    expect(reconnect.shouldSend('v7')).to.equal(false);
    expect(reconnect.shouldSend('v8')).to.equal(true);
    expect(reconnect.snapshot().state).to.equal('SYNCED');
  });

  it('ignores a superseded nonce but flags one the stream never sent', () => {
    const t = new AckTracker();
    t.recordSent('v1', 'n1', 0);
    t.recordSent('v2', 'n2', 0);
    expect(t.onRequest({ versionInfo: 'v1', responseNonce: 'n1' }, 0, true)).to.deep.equal({ kind: 'stale' });
    expect(t.onRequest({ versionInfo: 'v1', responseNonce: 'n9' }, 0, false)).to.deep.equal({ kind: 'unknown-nonce' });
    expect(t.snapshot().state).to.equal('STALE');
  });
});
