import { expect } from 'chai';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasErrorCode } from '@trellis/shared';
import { makeTmpDir, openssl } from '@trellis/testkit';
import { initCertificateAuthority } from '../../src/ca/ca-setup';
import { loadCertificateAuthority } from '../../src/ca/certificate-authority';
import { advanceRootRotation, decideRootRotation, type RootRotationState } from '../../src/lifecycle/root-rotation';
import { bundleVersion, prepareRootRotation, proxiesFromAdmin, readBundleRoots, signRootRotationCsr, startRootRotation, startRootRotationWithRootDir, stepRootRotation } from '../../src/lifecycle/root-rotation-driver';
import { ensureNewRoot } from '../../src/lifecycle/root-dir';
import { createIntermediateCsr, generateCaKey } from '../../src/lifecycle/ca-material';
import { loadRootRotationState, parseRootRotationState } from '../../src/lifecycle/root-rotation-store';
import { LIFECYCLE_LOCK_FILE, withLifecycleLock } from '../../src/lifecycle/lifecycle-lock';
import { activateNextIntermediate, prepareNextIntermediate, signNextIntermediateWithRoot } from '../../src/lifecycle/intermediate-slots';

const T0 = Date.UTC(2026, 0, 1);
const at = (s: number): Date => new Date(T0 + s * 1000);

const base: RootRotationState = Object.freeze({
  version: 1,
  phase: 'bundle',
  trustDomain: 'example.org',
  startedAt: at(0).toISOString(),
  phaseSince: at(0).toISOString(),
  oldRootsPem: ['OLD'],
  newRootPem: 'NEW',
  switchedAt: null,
  reloadGraceSeconds: 60,
});

describe('root rotation phases', () => {
  const proxy = (id: number, v: string | null): { id: number; spiffeId: string; bundleAckedVersion: string | null } => ({ id, spiffeId: `spiffe://example.org/w${id}`, bundleAckedVersion: v });
  const cases: Array<[string, RootRotationState, Partial<Parameters<typeof decideRootRotation>[1]>, string]> = [
    ['waits in phase 1 when the sidecars cannot be observed', base, { proxies: null }, 'none'],
    ['waits in phase 1 while one sidecar holds the old bundle', base, { proxies: [proxy(1, 'V2'), proxy(2, 'V1')] }, 'none'],
    ['waits in phase 1 while one sidecar has ACKed nothing', base, { proxies: [proxy(1, null)] }, 'none'],
    ['switches once every connected sidecar ACKed the two-root bundle', base, { proxies: [proxy(1, 'V2'), proxy(2, 'V2')] }, 'switch-intermediate'],
    ['switches when no sidecar is connected', base, { proxies: [] }, 'switch-intermediate'],
    ['waits in phase 2 during the reload grace', { ...base, phase: 'renew', switchedAt: at(100).toISOString() }, { now: at(130), oldLeaves: { count: 0, lastNotAfter: null } }, 'none'],
    ['waits in phase 2 while a leaf of the old root is unexpired', { ...base, phase: 'renew', switchedAt: at(100).toISOString() }, { now: at(200), oldLeaves: { count: 1, lastNotAfter: at(900) } }, 'none'],
    ['waits in phase 2 when the audit log could not be read', { ...base, phase: 'renew', switchedAt: at(100).toISOString() }, { now: at(200), oldLeaves: null }, 'none'],
    ['drops the old root once every old leaf expired', { ...base, phase: 'renew', switchedAt: at(100).toISOString() }, { now: at(200), oldLeaves: { count: 0, lastNotAfter: null } }, 'drop-old-root'],
    ['does nothing once done', { ...base, phase: 'done', switchedAt: at(100).toISOString() }, { now: at(200) }, 'none'],
  ];
  for (const [name, state, obs, want] of cases) {
    it(name, () => {
      const d = decideRootRotation(state, { now: at(10), expectedBundleVersion: 'V2', proxies: [], oldLeaves: null, ...obs });
      expect(d.action).to.equal(want);
      if (want === 'none' && state.phase !== 'done') expect(d.waitingFor).to.not.equal('');
    });
  }

  it('names the sidecars that have not ACKed the two-root bundle', () => {
    const d = decideRootRotation(base, { now: at(10), expectedBundleVersion: 'V2', proxies: [proxy(1, 'V2'), proxy(7, 'V1')], oldLeaves: null });
    expect(d.laggingProxies.map((p) => p.id)).to.deep.equal([7]);
  });

  it('moves bundle → renew → done and records when the CA switched', () => {
    const s1 = advanceRootRotation(base, 'switch-intermediate', at(50));
    expect(s1.phase).to.equal('renew');
    expect(s1.switchedAt).to.equal(at(50).toISOString());
    expect(advanceRootRotation(s1, 'switch-intermediate', at(60))).to.equal(s1);
    expect(advanceRootRotation(s1, 'drop-old-root', at(70)).phase).to.equal('done');
  });

  it('refuses a state file with a bad phase, naming the field', () => {
    let err: unknown;
    try {
      parseRootRotationState(JSON.stringify({ ...base, phase: 'halfway' }), 'state.json');
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_BAD_STATE')).to.equal(true);
    expect((err as { details: { field: string } }).details.field).to.equal('phase');
  });

  it('reads the bundle ACK of each sidecar from the admin /debug/proxies document', () => {
    const doc = { proxies: [{ id: 3, spiffeId: 'spiffe://example.org/a', types: { bundle: { ackedVersion: 'abc' } } }, { id: 4, spiffeId: null, types: {} }] };
    expect(proxiesFromAdmin(doc)).to.deep.equal([
      { id: 3, spiffeId: 'spiffe://example.org/a', bundleAckedVersion: 'abc' },
      { id: 4, spiffeId: null, bundleAckedVersion: null },
    ]);
    expect(proxiesFromAdmin({ nope: 1 })).to.equal(null);
  });
});

function leafCsr(dir: string): Buffer {
  const key = join(dir, `leaf-${Math.random().toString(16).slice(2)}.key`);
  const csr = key.replace(/\.key$/, '.csr');
  const r = openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', key, '-subj', '/CN=leaf', '-outform', 'DER', '-out', csr]);
  expect(r.status, r.stderr).to.equal(0);
  return readFileSync(csr);
}

function verify(tmp: string, rootsPem: string, chainPem: string): number {
  const n = Math.random().toString(16).slice(2);
  const [first, ...rest] = chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
  writeFileSync(join(tmp, `r-${n}.pem`), rootsPem);
  writeFileSync(join(tmp, `l-${n}.pem`), first!);
  writeFileSync(join(tmp, `u-${n}.pem`), rest.join(''));
  return openssl(['verify', '-CAfile', join(tmp, `r-${n}.pem`), '-untrusted', join(tmp, `u-${n}.pem`), join(tmp, `l-${n}.pem`)]).status;
}

describe('root rotation on a CA dir', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  beforeEach(async () => {
    tmp = makeTmpDir('trellis-rootrot-');
    caDir = join(tmp.dir, 'ca');
    await initCertificateAuthority(caDir, { trustDomain: 'example.org' });
  });
  afterEach(() => tmp.cleanup());

  async function issue(id: string, ttlSeconds = 300): Promise<{ chainPem: string; notAfter: Date }> {
    const ca = await loadCertificateAuthority(caDir);
    try {
      return await ca.issue({ csr: leafCsr(tmp.dir), spiffeId: id, ttlSeconds, requester: 'test' });
    } finally {
      ca.close();
    }
  }

  it('walks all three phases, each gated, and leaves from either root verify against the two-root bundle', async () => {
    const oldRoot = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const oldLeaf = await issue('spiffe://example.org/ns/a/sa/old');
    const started = await startRootRotationWithRootDir(caDir, join(tmp.dir, 'newroot'), { now: new Date(), reloadGraceSeconds: 0 });
    expect(started.phase).to.equal('bundle');
    const twoRoots = readFileSync(join(caDir, 'root.pem'), 'utf8');
    expect(readBundleRoots(caDir)).to.have.length(2);
    expect(twoRoots.startsWith(oldRoot)).to.equal(true);
    let err: unknown;
    try {
      await startRootRotationWithRootDir(caDir, join(tmp.dir, 'other'), { now: new Date() });
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_ROTATION_CONFLICT')).to.equal(true);

    const v2 = bundleVersion('example.org', readBundleRoots(caDir));
    const waiting = await stepRootRotation(caDir, [{ id: 1, spiffeId: null, bundleAckedVersion: 'old' }], new Date());
    expect(waiting.applied).to.equal('none');
    expect(loadRootRotationState(caDir)?.phase, 'a restart resumes in phase 1').to.equal('bundle');

    const switched = await stepRootRotation(caDir, [{ id: 1, spiffeId: null, bundleAckedVersion: v2 }], new Date());
    expect(switched.applied).to.equal('switch-intermediate');
    expect(switched.state.phase).to.equal('renew');
    const newLeaf = await issue('spiffe://example.org/ns/a/sa/new');
    expect(verify(tmp.dir, twoRoots, oldLeaf.chainPem)).to.equal(0);
    expect(verify(tmp.dir, twoRoots, newLeaf.chainPem)).to.equal(0);
    expect(verify(tmp.dir, readFileSync(join(tmp.dir, 'newroot', 'root.pem'), 'utf8'), newLeaf.chainPem), 'the new leaf chains to the new root').to.equal(0);

    const stillOld = await stepRootRotation(caDir, [], new Date());
    expect(stillOld.applied, 'an old leaf is still unexpired').to.equal('none');
    expect(stillOld.decision.waitingFor).to.match(/expire/);

    const afterOld = new Date(oldLeaf.notAfter.getTime() + 1000);
    const dropped = await stepRootRotation(caDir, [], afterOld);
    expect(dropped.applied).to.equal('drop-old-root');
    expect(dropped.state.phase).to.equal('done');
    const final = readFileSync(join(caDir, 'root.pem'), 'utf8');
    expect(readBundleRoots(caDir)).to.have.length(1);
    expect(final).to.not.contain(oldRoot.trim());
    expect(verify(tmp.dir, final, newLeaf.chainPem)).to.equal(0);
    expect(verify(tmp.dir, final, oldLeaf.chainPem), 'the old root is no longer trusted').to.not.equal(0);
  });

  it('Should start from certificates alone: the CA dir never receives the new root key and the state records no path', async () => {
    const prepared = await prepareRootRotation(caDir);
    const newRoot = await ensureNewRoot(join(tmp.dir, 'elsewhere'), { trustDomain: prepared.trustDomain, now: new Date() });
    const material = await signRootRotationCsr(newRoot, prepared.csrPem, { trustDomain: prepared.trustDomain, now: new Date() });
    const state = await startRootRotation(caDir, { material, now: new Date(), reloadGraceSeconds: 0 });
    const onDisk = readFileSync(join(caDir, 'root-rotation.json'), 'utf8');
    expect(onDisk).to.not.contain(tmp.dir);
    expect(onDisk).to.not.match(/newRootDir|rootDir/);
    expect(state.newRootPem).to.equal(readBundleRoots(caDir)[1]);
    const newKey = readFileSync(join(tmp.dir, 'elsewhere', 'root.key'), 'utf8').split('\n')[1]!;
    for (const f of readdirSync(caDir, { recursive: true }) as string[]) {
      const path = join(caDir, f);
      if (statSync(path).isFile()) expect(readFileSync(path, 'utf8'), f).to.not.contain(newKey);
    }
    // The switch activates the intermediate the new root signed at the start.
    const v2 = bundleVersion('example.org', readBundleRoots(caDir));
    const switched = await stepRootRotation(caDir, [{ id: 1, spiffeId: null, bundleAckedVersion: v2 }], new Date());
    expect(switched.applied).to.equal('switch-intermediate');
    expect(verify(tmp.dir, readFileSync(join(tmp.dir, 'elsewhere', 'root.pem'), 'utf8'), (await issue('spiffe://example.org/ns/a/sa/x')).chainPem)).to.equal(0);
  });

  it('Should refuse rotation material that is not for next/ or not signed by the new root, leaving root.pem as it was', async () => {
    const before = readFileSync(join(caDir, 'root.pem'), 'utf8');
    const prepared = await prepareRootRotation(caDir);
    const rootA = await ensureNewRoot(join(tmp.dir, 'a'), { trustDomain: 'example.org', now: new Date() });
    const rootB = await ensureNewRoot(join(tmp.dir, 'b'), { trustDomain: 'example.org', now: new Date() });
    const good = await signRootRotationCsr(rootA, prepared.csrPem, { trustDomain: 'example.org', now: new Date() });
    const otherCsr = await createIntermediateCsr('example.org', await generateCaKey('ec-p256'));
    const otherKey = await signRootRotationCsr(rootA, otherCsr, { trustDomain: 'example.org', now: new Date() });
    const cases: Array<[string, { newRootPem: string; intermediatePem: string }, string]> = [
      ['an intermediate signed by another root', { newRootPem: rootB.certPem, intermediatePem: good.intermediatePem }, 'TRELLIS_LIFECYCLE_BAD_ROTATION_MATERIAL'],
      ['an intermediate for another key than next/', otherKey, 'TRELLIS_CA_KEY_MISMATCH'],
      ['a "root" that is the intermediate itself', { newRootPem: good.intermediatePem, intermediatePem: good.intermediatePem }, 'TRELLIS_LIFECYCLE_BAD_ROTATION_MATERIAL'],
      ['no certificate at all', { newRootPem: 'nothing', intermediatePem: good.intermediatePem }, 'TRELLIS_LIFECYCLE_BAD_ROTATION_MATERIAL'],
    ];
    for (const [name, material, code] of cases) {
      let err: unknown;
      try {
        await startRootRotation(caDir, { material, now: new Date() });
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code, `${name}: ${String(err)}`).to.equal(code);
      expect(readFileSync(join(caDir, 'root.pem'), 'utf8'), name).to.equal(before);
      expect(loadRootRotationState(caDir), name).to.equal(null);
    }
  });

  it('keeps the old root when the CA was switched back to an intermediate under it by hand', async () => {
    await startRootRotationWithRootDir(caDir, join(tmp.dir, 'newroot'), { now: new Date(), reloadGraceSeconds: 0 });
    await stepRootRotation(caDir, [], new Date());
    // An operator activates an intermediate signed by the old root (whose key is still in the CA dir).
    await prepareNextIntermediate(caDir, { force: true });
    await signNextIntermediateWithRoot(caDir, caDir, { now: new Date() });
    activateNextIntermediate(caDir, { now: new Date(), force: true });
    let err: unknown;
    try {
      await stepRootRotation(caDir, [], new Date(Date.now() + 2 * 86_400_000));
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_ROTATION_CONFLICT'), String(err)).to.equal(true);
    expect(readBundleRoots(caDir)).to.have.length(2);
    expect(loadRootRotationState(caDir)?.phase).to.equal('renew');
  });
});

describe('lifecycle lock', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTmpDir('trellis-lock-');
  });
  afterEach(() => tmp.cleanup());

  it('refuses a second step while another live process holds the CA dir, and takes over a lock whose owner is gone', async () => {
    writeFileSync(join(tmp.dir, LIFECYCLE_LOCK_FILE), String(process.ppid));
    let err: unknown;
    try {
      await withLifecycleLock(tmp.dir, () => 1);
    } catch (e) {
      err = e;
    }
    expect(hasErrorCode(err, 'TRELLIS_LIFECYCLE_ROTATION_CONFLICT')).to.equal(true);
    // A step that waits gets the lock as soon as the other process lets go.
    setTimeout(() => rmSync(join(tmp.dir, LIFECYCLE_LOCK_FILE), { force: true }), 100);
    expect(await withLifecycleLock(tmp.dir, () => 7, { waitMs: 5000 })).to.equal(7);
    writeFileSync(join(tmp.dir, LIFECYCLE_LOCK_FILE), '4194303');
    expect(await withLifecycleLock(tmp.dir, () => 42)).to.equal(42);
    expect(() => readFileSync(join(tmp.dir, LIFECYCLE_LOCK_FILE)), 'released after the step').to.throw();
  });
});
