import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasErrorCode } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { parseRevocations } from '../../src/lifecycle/revocations-file';
import { parseAuditLog } from '../../src/lifecycle/audit-index';
import {
  addRevocation, EMPTY_REVOCATIONS, isRenewalRefused, liftRevocation, pruneRevocations, revocationsResource, revocationTarget,
} from '../../src/lifecycle/revocation-list';
import { loadRevocationStore, saveRevocationStore } from '../../src/lifecycle/revocation-store';

const T0 = Date.UTC(2026, 0, 1);
const at = (m: number): Date => new Date(T0 + m * 60_000);
const line = (serial: string, spiffeId: string, issuedMin: number, ttlMin: number): string =>
  JSON.stringify({ time: at(issuedMin).toISOString(), serial, spiffeId, notAfter: at(issuedMin + ttlMin).toISOString(), keyType: 'ec-p256', requester: 't' });
const audit = parseAuditLog([
  line('aa01', 'spiffe://example.org/ns/a/sa/web', 0, 60),
  line('aa02', 'spiffe://example.org/ns/a/sa/web', 30, 60),
  line('bb01', 'spiffe://example.org/ns/a/sa/db', 0, 60),
  '{"broken": true}',
  'not json',
].join('\n'));

describe('revocation list', () => {
  it('counts audit lines it cannot trust instead of failing', () => {
    expect(audit.records).to.have.length(3);
    expect(audit.badLines).to.equal(2);
  });

  it('expires a SPIFFE ID entry with the latest leaf the audit log knows for it', () => {
    const l = addRevocation(EMPTY_REVOCATIONS, { spiffeId: 'spiffe://example.org/ns/a/sa/web' }, { now: at(40), reason: 'key leaked', audit });
    expect(l.entries[0]).to.include({ kind: 'spiffeId', value: 'spiffe://example.org/ns/a/sa/web', reason: 'key leaked', expiresAt: at(90).toISOString() });
  });

  it('normalises serials the way openssl prints them', () => {
    expect(revocationTarget({ serial: '00:AA:01' })).to.deep.equal({ kind: 'serial', value: 'aa01' });
    expect(revocationTarget({ serial: '0xAA01' })).to.deep.equal({ kind: 'serial', value: 'aa01' });
    expect(() => revocationTarget({ serial: 'zz' })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_BAD_REVOCATION'));
  });

  it('Should push the serials of a plain revocations file in the one serial form, leading zeros and separators dropped', () => {
    // The control plane compares a presented serial without its leading zeros; a listed "00:0A:0B" must still match it.
    expect(parseRevocations('serials: ["00:0A:0B", "0x0C", "DD EE"]\nspiffeIds: []\n', 'revocations.yaml').serials).to.deep.equal(['a0b', 'c', 'ddee']);
    expect(() => parseRevocations('serials: ["not-hex"]\n', 'revocations.yaml')).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_X509_BAD_SERIAL'));
  });

  it('finds the expiry of a serial whose first byte is below 0x10, however the target is written', () => {
    // The audit log writes whole bytes ("0c5e..."); openssl and users may drop or keep the leading zero.
    const log = parseAuditLog(line('0c5e', 'spiffe://example.org/ns/a/sa/web', 0, 60));
    for (const serial of ['C5E', '0C5E', '00:0c:5e', '0x0c5e']) {
      const l = addRevocation(EMPTY_REVOCATIONS, { serial }, { now: at(10), audit: log });
      expect(l.entries[0], serial).to.include({ kind: 'serial', value: 'c5e', expiresAt: at(60).toISOString() });
    }
  });

  it('refuses a target that is neither a workload SPIFFE ID nor a serial', () => {
    for (const t of [{}, { spiffeId: 'http://x' }, { spiffeId: 'spiffe://example.org' }, { spiffeId: 'spiffe://example.org/a', serial: '01' }]) {
      expect(() => addRevocation(EMPTY_REVOCATIONS, t, { now: at(0), audit })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_BAD_REVOCATION'));
    }
  });

  it('drops a serial entry from the pushed list and the store once its certificate expired', () => {
    const l = addRevocation(EMPTY_REVOCATIONS, { serial: 'BB01' }, { now: at(10), audit });
    expect(revocationsResource(l, at(59)).serials).to.deep.equal(['bb01']);
    expect(revocationsResource(l, at(61)).serials).to.deep.equal([]);
    expect(pruneRevocations(l, at(59)).entries).to.have.length(1);
    expect(pruneRevocations(l, at(61)).entries).to.have.length(0);
  });

  it('keeps refusing a revoked SPIFFE ID (pushed and at the CA) until it is lifted', () => {
    const id = 'spiffe://example.org/ns/a/sa/web';
    const l = pruneRevocations(addRevocation(EMPTY_REVOCATIONS, { spiffeId: id }, { now: at(40), audit }), at(500));
    expect(revocationsResource(l, at(500)).spiffeIds).to.deep.equal([id]);
    expect(isRenewalRefused(l, id).refused).to.equal(true);
    const lifted = liftRevocation(l, { spiffeId: id });
    expect(isRenewalRefused(lifted, id).refused).to.equal(false);
    expect(() => liftRevocation(lifted, { spiffeId: id })).to.throw().that.satisfies((e: unknown) => hasErrorCode(e, 'TRELLIS_LIFECYCLE_NOT_REVOKED'));
  });

  it('keeps the first revocation time when an identity is revoked again', () => {
    const a = addRevocation(EMPTY_REVOCATIONS, { spiffeId: 'spiffe://example.org/ns/a/sa/db' }, { now: at(1), reason: 'first', audit });
    const b = addRevocation(a, { spiffeId: 'spiffe://example.org/ns/a/sa/db' }, { now: at(5), audit });
    expect(b.entries).to.have.length(1);
    expect(b.entries[0]).to.include({ revokedAt: at(1).toISOString(), reason: 'first' });
  });
});

describe('revocation store', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTmpDir('trellis-revoke-');
  });
  afterEach(() => tmp.cleanup());

  it('persists entries across a reload, in a file the control plane watcher reads as is', () => {
    const path = join(tmp.dir, 'revocations.json');
    expect(loadRevocationStore(path).entries).to.deep.equal([]);
    let l = addRevocation(EMPTY_REVOCATIONS, { spiffeId: 'spiffe://example.org/ns/a/sa/web' }, { now: at(40), reason: 'r', audit });
    l = addRevocation(l, { serial: 'bb01' }, { now: at(40), audit });
    saveRevocationStore(path, l, at(40));
    const reloaded = loadRevocationStore(path);
    expect(reloaded).to.deep.equal(l);
    expect(parseRevocations(readFileSync(path, 'utf8'), path, at(40))).to.deep.equal({ serials: ['bb01'], spiffeIds: ['spiffe://example.org/ns/a/sa/web'] });
    expect(parseRevocations(readFileSync(path, 'utf8'), path, at(61)).serials, 'an expired serial is no longer pushed').to.deep.equal([]);
  });

  it('refuses a damaged store, naming the entry field, instead of forgetting revocations', () => {
    const path = join(tmp.dir, 'revocations.json');
    writeFileSync(path, JSON.stringify({ entries: [{ kind: 'serial', value: 'aa', reason: 'x', revokedAt: 'yesterday', expiresAt: null }] }));
    let err: unknown;
    try {
      loadRevocationStore(path);
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_BAD_STATE')).to.equal(true);
    expect((err as { details: { field: string } }).details.field).to.equal('entries[0].revokedAt');
  });
});
