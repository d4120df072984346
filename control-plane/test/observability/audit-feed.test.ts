/**
 * The audit feed: a bounded ring of what the control plane already records
 * (the CA's audit trail, its own audit log lines), read by sequence number,
 * with a long poll that wakes on the next event.
 */
import { expect } from 'chai';
import { appendFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, silentLogger } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { AuditFeed, auditTrailEvent, tapAuditLog } from '../../src/observability/audit-feed';
import { AuditTrailFollower } from '../../src/observability/audit-trail-follower';
import { waitForEvents } from '../../src/admin/observability-routes';

const ID = 'spiffe://trellis.local/ns/shop/sa/frontend';
const issuance = (serial: string): string => JSON.stringify({ time: '2030-01-01T00:00:00.000Z', serial, spiffeId: ID, notAfter: '2030-01-01T00:01:00.000Z', keyType: 'ec-p256', requester: 'discovery/svid' });

describe('audit feed', () => {
  it('Should keep the newest events up to its capacity and say from which sequence number it still holds them', () => {
    const feed = new AuditFeed(3);
    for (let i = 1; i <= 5; i++) feed.record({ time: new Date(i).toISOString(), kind: 'issuance', action: 'svid.issued', spiffeId: ID, fields: { serial: String(i) } });
    const page = feed.since(0);
    expect(page.events.map((e) => e.seq)).to.deep.equal([3, 4, 5]);
    expect(page).to.deep.include({ next: 5, oldest: 3 });
    expect(feed.since(4).events.map((e) => e.seq)).to.deep.equal([5]);
    expect(feed.since(5)).to.deep.include({ events: [], next: 5 });
  });

  it('Should classify the CA audit trail: issuance lines, revocations, rotations; and skip what is not a record', () => {
    expect(auditTrailEvent(issuance('1a'))).to.deep.include({ kind: 'issuance', action: 'svid.issued', spiffeId: ID });
    expect(auditTrailEvent(JSON.stringify({ time: '2030-01-01T00:00:00.000Z', event: 'revocation.added', kind: 'spiffe-id', value: ID, reason: 'compromised' }))).to.deep.include({ kind: 'revocation', action: 'revocation.added', spiffeId: ID });
    expect(auditTrailEvent(JSON.stringify({ time: '2030-01-01T00:00:00.000Z', event: 'root-rotation.switched', phase: 'switched' }))).to.deep.include({ kind: 'rotation', spiffeId: null });
    expect(auditTrailEvent(JSON.stringify({ time: '2030-01-01T00:00:00.000Z', event: 'intermediate.activated' }))).to.deep.include({ kind: 'rotation' });
    expect(auditTrailEvent('not json')).to.equal(null);
    expect(auditTrailEvent('[1,2]')).to.equal(null);
  });

  it('Should record the audit log lines at warn or error as refusals, writing every line through unchanged', () => {
    const lines: string[] = [];
    const feed = new AuditFeed();
    const log = tapAuditLog(createLogger({ component: 'cp', sink: { write: (l: string) => lines.push(l) } }), feed, () => new Date(0)).child({ component: 'discovery' });
    log.warn('svid refused', { event: 'audit', spiffeId: ID, error: Object.assign(new Error('revoked'), { code: 'TRELLIS_LIFECYCLE_REVOKED' }) });
    log.info('svid issued', { event: 'audit', spiffeId: ID });
    log.warn('discovery write failed', { error: new Error('x') });
    expect(lines).to.have.length(3);
    const events = feed.since(0).events;
    expect(events).to.have.length(1);
    expect(events[0]).to.deep.include({ kind: 'refusal', action: 'svid refused', spiffeId: ID });
    expect(events[0]!.fields).to.deep.include({ component: 'discovery', error: 'revoked [TRELLIS_LIFECYCLE_REVOKED]' });
  });

  it('Should answer a long poll as soon as an event arrives, and with nothing when the wait runs out', async () => {
    const feed = new AuditFeed();
    const waiting = waitForEvents(feed, 0, 10, 5000);
    setTimeout(() => feed.record({ time: new Date().toISOString(), kind: 'revocation', action: 'revocation.added', spiffeId: ID, fields: {} }), 20);
    expect((await waiting).events.map((e) => e.action)).to.deep.equal(['revocation.added']);
    expect((await waitForEvents(feed, 1, 10, 10)).events).to.deep.equal([]);
  });
});

describe('audit trail follower (a real audit.log)', () => {
  const tmp = makeTmpDir('trellis-audit-feed-');
  after(() => tmp.cleanup());

  it('Should open with the recent history, follow appends whole lines only, and start over on a truncated file', () => {
    const file = join(tmp.dir, 'audit.log');
    writeFileSync(file, [issuance('01'), issuance('02'), issuance('03')].join('\n') + '\n');
    const feed = new AuditFeed();
    const f = new AuditTrailFollower(file, feed, silentLogger, { backlogBytes: issuance('02').length * 2 + 5 });
    f.poll();
    // The backlog cut into the first line: it is skipped, never half-read.
    expect(feed.since(0).events.map((e) => e.fields['serial'])).to.deep.equal(['02', '03']);
    appendFileSync(file, issuance('04') + '\n' + issuance('05').slice(0, 20));
    f.poll();
    expect(feed.since(2).events.map((e) => e.fields['serial'])).to.deep.equal(['04']);
    appendFileSync(file, issuance('05').slice(20) + '\n');
    f.poll();
    expect(feed.since(3).events.map((e) => e.fields['serial'])).to.deep.equal(['05']);
    truncateSync(file, 0);
    appendFileSync(file, issuance('06') + '\n');
    f.poll();
    expect(feed.since(4).events.map((e) => e.fields['serial'])).to.deep.equal(['06']);
  });
});
