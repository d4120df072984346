import { expect } from 'chai';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { hasErrorCode, silentLogger } from '@trellis/shared';
import { FakeClock, makeTmpDir, openssl } from '@trellis/testkit';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { loadCertificateAuthority } from '../../src/ca/certificate-authority';
import { startLifecycleManager } from '../../src/lifecycle/lifecycle-manager';
import { registerLifecycleGauges } from '../../src/lifecycle/lifecycle-metrics';
import { openReloadingAuthority } from '../../src/lifecycle/reloading-authority';
import { revokeInCaDir, liftInCaDir } from '../../src/lifecycle/revocation-store';
import { readIntermediateSlots } from '../../src/lifecycle/intermediate-slots';
import { parseAuditLog } from '../../src/lifecycle/audit-index';

const DAY = 86_400_000;

function csr(dir: string): Buffer {
  const out = join(dir, `l-${Math.random().toString(16).slice(2)}.csr`);
  const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', out + '.key', '-subj', '/CN=l', '-outform', 'DER', '-out', out]);
  expect(r.status, r.stderr).to.equal(0);
  return readFileSync(out);
}

describe('lifecycle manager and reloading authority', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  beforeEach(async () => {
    tmp = makeTmpDir('trellis-lcm-');
    caDir = join(tmp.dir, 'ca');
    await initCertificateAuthority(caDir, { trustDomain: 'example.org', intermediateValidityDays: 60 });
  });
  afterEach(() => tmp.cleanup());

  it('prepares, signs with the online root and activates the next intermediate when due, and new leaves come from it at once', async () => {
    const clock = new FakeClock(new Date());
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d, { clock: clock.now }), logger: silentLogger, clock: clock.now, closeDelayMs: 10 });
    const mgr = startLifecycleManager({ caDir, rootDir: caDir, intervalMs: 3_600_000 }, { authority, logger: silentLogger, clock: clock.now });
    try {
      await mgr.tick();
      expect(readIntermediateSlots(caDir).nextState, 'nothing to do in the first half of its life').to.equal('empty');
      const before = readFileSync(join(caDir, 'intermediate.pem'), 'utf8');
      clock.advance(31 * DAY);
      await mgr.tick();
      expect(readIntermediateSlots(caDir).nextState, 'prepared and signed past half life').to.equal('signed');
      expect(readFileSync(join(caDir, 'intermediate.pem'), 'utf8')).to.equal(before);
      clock.advance(20 * DAY);
      await mgr.tick();
      const after = readFileSync(join(caDir, 'intermediate.pem'), 'utf8');
      expect(after, 'activated past five sixths').to.not.equal(before);
      const leaf = await authority.issue({ csr: csr(tmp.dir), spiffeId: 'spiffe://example.org/ns/a/sa/x', requester: 't' });
      expect(leaf.chainPem).to.contain(after.trim());
      const events = readFileSync(join(caDir, 'audit.log'), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event?: string }).event).filter(Boolean);
      expect(events).to.include.members(['intermediate.prepared', 'intermediate.signed', 'intermediate.activated']);
      expect(parseAuditLog(readFileSync(join(caDir, 'audit.log'), 'utf8')).badLines, 'event lines are not mistaken for broken issuance lines').to.equal(0);
    } finally {
      mgr.stop();
      authority.close();
    }
  });

  it('with the root offline, prepares the next intermediate and reports it waiting through the gauges', async () => {
    rmSync(join(caDir, 'root.key'));
    const clock = new FakeClock(new Date(Date.now() + 40 * DAY));
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d, { clock: clock.now }), logger: silentLogger });
    const mgr = startLifecycleManager({ caDir, intervalMs: 3_600_000 }, { authority, logger: silentLogger, clock: clock.now });
    try {
      await mgr.tick();
      expect(readIntermediateSlots(caDir).nextState).to.equal('prepared');
      const registry = new Registry();
      registerLifecycleGauges(registry, caDir, clock.now);
      const text = await registry.metrics();
      expect(text).to.match(/^trellis_lifecycle_next_intermediate_state 1$/m);
      expect(text).to.match(/^trellis_lifecycle_root_rotation_phase 0$/m);
      expect(text).to.match(/^trellis_lifecycle_certificate_status\{kind="intermediate",[^}]*\} 1$/m);
    } finally {
      mgr.stop();
      authority.close();
    }
  });

  it('treats root.key in the CA dir as an online root (a development CA) and signs the next intermediate by itself', async () => {
    const clock = new FakeClock(new Date(Date.now() + 40 * DAY));
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d, { clock: clock.now }), logger: silentLogger });
    const mgr = startLifecycleManager({ caDir, intervalMs: 3_600_000 }, { authority, logger: silentLogger, clock: clock.now });
    try {
      await mgr.tick();
      expect(readIntermediateSlots(caDir).nextState).to.equal('signed');
    } finally {
      mgr.stop();
      authority.close();
    }
  });

  it('refuses to issue for a revoked SPIFFE ID until it is lifted', async () => {
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d), logger: silentLogger });
    try {
      const id = 'spiffe://example.org/ns/a/sa/x';
      revokeInCaDir(caDir, { spiffeId: id }, { now: new Date(), reason: 'test' });
      await authority.refresh();
      let err: unknown;
      try {
        await authority.issue({ csr: csr(tmp.dir), spiffeId: id, requester: 't' });
      } catch (e) {
        err = e;
      }
      expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_REVOKED'), String(err)).to.equal(true);
      await authority.issue({ csr: csr(tmp.dir), spiffeId: 'spiffe://example.org/ns/a/sa/other', requester: 't' });
      liftInCaDir(caDir, { spiffeId: id }, { now: new Date() });
      await authority.refresh();
      await authority.issue({ csr: csr(tmp.dir), spiffeId: id, requester: 't' });
    } finally {
      authority.close();
    }
  });

  it('keeps issuing from the last good CA when the dir changes to something unloadable', async () => {
    const authority = await openReloadingAuthority(caDir, { load: (d) => loadCertificateAuthority(d), logger: silentLogger });
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(caDir, 'intermediate.pem'), 'garbage');
      expect(await authority.refresh()).to.equal(false);
      await authority.issue({ csr: csr(tmp.dir), spiffeId: 'spiffe://example.org/ns/a/sa/x', requester: 't' });
    } finally {
      authority.close();
    }
  });
});
