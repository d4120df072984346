import { expect } from 'chai';
import { chmodSync, closeSync, mkdirSync, openSync, renameSync, rmSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, POLICY_CODES, type PolicySet } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { nodePolicyFs, PolicyStore, type PolicyStoreOptions } from '../../src/policy';

const NOW = new Date('2025-06-01T12:00:00Z');

const pa = (name: string, mode: string, extra = '') => `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: ${name}\n  namespace: foo\n${extra}spec:\n  mtls:\n    mode: ${mode}\n`;
const ap = (name: string) => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: foo\nspec:\n  action: DENY\n  rules: [{}]\n`;

interface Harness {
  dir: string;
  store: PolicyStore;
  logs: Array<Record<string, unknown>>;
  rejected: string[];
  changes: PolicySet[];
  cleanup: () => void;
}

function harness(opts: Partial<PolicyStoreOptions> = {}, fs = nodePolicyFs): Harness {
  const tmp = makeTmpDir('trellis-policy-store-');
  const logs: Array<Record<string, unknown>> = [];
  const rejected: string[] = [];
  const changes: PolicySet[] = [];
  const logger = createLogger({ component: 'policy', level: 'debug', sink: { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) }, now: () => NOW });
  const store = new PolicyStore({ dir: tmp.dir, rescanIntervalMs: 0, debounceMs: 20, settleMs: 20, ...opts }, { logger, now: () => NOW, fs, metrics: { fileRejected: (f) => rejected.push(f) } });
  store.on('change', (s) => changes.push(s));
  return { dir: tmp.dir, store, logs, rejected, changes, cleanup: () => { store.close(); tmp.cleanup(); } };
}

/** Resolves with the next PolicySet the store publishes (rejects after `ms`, so a broken watcher fails the test instead of hanging it). */
function nextChange(store: PolicyStore, ms = 10_000): Promise<PolicySet> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no change event')), ms);
    const off = store.subscribe((s) => {
      clearTimeout(t);
      off();
      resolve(s);
    });
  });
}

const names = (set: PolicySet) => [...set.peerAuthentications, ...set.authorizationPolicies].map((p) => p.metadata.name).sort();

describe('PolicyStore', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  it('loads every .yaml, .yml and .json file and ignores the rest', async () => {
    h = harness();
    writeFileSync(join(h.dir, 'a.yaml'), pa('a', 'STRICT'));
    writeFileSync(join(h.dir, 'b.yml'), ap('b'));
    writeFileSync(join(h.dir, 'c.json'), JSON.stringify({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'c', namespace: 'foo' }, spec: {} }));
    writeFileSync(join(h.dir, 'notes.txt'), 'not a policy');
    writeFileSync(join(h.dir, '.hidden.yaml'), 'garbage: [');
    await h.store.start();
    expect(names(h.store.current())).to.deep.equal(['a', 'b', 'c']);
    expect(h.changes).to.have.length(1);
    const st = h.store.status();
    expect(st.files.map((f) => [f.file, f.state])).to.deep.equal([['a.yaml', 'ok'], ['b.yml', 'ok'], ['c.json', 'ok']]);
    expect(st.counts).to.deep.equal({ peerAuthentications: 1, authorizationPolicies: 2 });
  });

  it('keeps the last good version of a file when an edit fails validation, and says why', async () => {
    h = harness();
    const file = join(h.dir, 'mesh.yaml');
    writeFileSync(file, pa('p', 'PERMISSIVE') + '---\n' + ap('d'));
    await h.store.start();
    const good = h.store.current();
    const goodVersion = h.store.version();
    writeFileSync(file, pa('p', 'BLAH') + '---\n' + ap('d'));
    expect(await h.store.reload()).to.equal(false);
    expect(h.store.current()).to.equal(good);
    expect(h.store.version()).to.equal(goodVersion);
    expect(h.rejected).to.deep.equal(['mesh.yaml']);
    const f = h.store.status().files[0]!;
    expect(f.state).to.equal('rejected');
    expect(f.policies).to.deep.equal(['PeerAuthentication foo/p', 'AuthorizationPolicy foo/d']);
    expect(f.lastGoodAt).to.equal(NOW.toISOString());
    expect(f.errors).to.have.length(1);
    expect(f.errors[0]).to.contain('mesh.yaml:8:').and.contain('spec.mtls.mode').and.contain(POLICY_CODES.INVALID_VALUE);
    const line = h.logs.find((l) => l['level'] === 'error');
    expect(line).to.deep.include({ msg: 'policy file rejected; its last good version stays in force', code: POLICY_CODES.INVALID_VALUE, errors: 1 });
    // Fixing the file puts the new content in force.
    writeFileSync(file, pa('p', 'DISABLE'));
    expect(await h.store.reload()).to.equal(true);
    expect(h.store.current().peerAuthentications[0]!.mtlsMode).to.equal('DISABLE');
    expect(names(h.store.current())).to.deep.equal(['p']);
    expect(h.store.status().files[0]!.state).to.equal('ok');
  });

  it('rejects a file whose only bad part is one document, keeping all its previous policies', async () => {
    h = harness();
    const file = join(h.dir, 'two.yaml');
    writeFileSync(file, pa('p', 'STRICT'));
    await h.store.start();
    writeFileSync(file, pa('p', 'DISABLE') + '---\n' + ap('d').replace('rules: [{}]', 'rules: [{when: [{key: a, values: [b]}]}]'));
    await h.store.reload();
    expect(h.store.current().peerAuthentications[0]!.mtlsMode).to.equal('STRICT');
    expect(h.store.status().files[0]!.errors.join()).to.contain(POLICY_CODES.UNSUPPORTED);
  });

  it('starts with nothing from a file that was never valid, and reports it', async () => {
    h = harness();
    writeFileSync(join(h.dir, 'bad.yaml'), 'apiVersion: security.istio.io/v1\nkind: Nope\nmetadata: {name: x}\n');
    writeFileSync(join(h.dir, 'good.yaml'), pa('g', 'STRICT'));
    await h.store.start();
    expect(names(h.store.current())).to.deep.equal(['g']);
    const bad = h.store.status().files.find((f) => f.file === 'bad.yaml')!;
    expect(bad).to.deep.include({ state: 'rejected', lastGoodAt: null });
    expect(bad.policies).to.deep.equal([]);
    expect(h.rejected).to.deep.equal(['bad.yaml']);
  });

  it('emits a change only when the effective content changes', async () => {
    h = harness();
    const file = join(h.dir, 'p.yaml');
    writeFileSync(file, pa('p', 'STRICT'));
    await h.store.start();
    expect(h.changes).to.have.length(1);
    writeFileSync(file, '# a comment\n' + pa('p', 'STRICT'));
    expect(await h.store.reload()).to.equal(false);
    writeFileSync(join(h.dir, 'empty.yaml'), '');
    expect(await h.store.reload()).to.equal(false);
    expect(h.changes).to.have.length(1);
    writeFileSync(file, pa('p', 'PERMISSIVE'));
    expect(await h.store.reload()).to.equal(true);
    expect(h.changes).to.have.length(2);
    expect(h.changes[1]).to.equal(h.store.current());
    expect(Object.isFrozen(h.changes[1])).to.equal(true);
  });

  it('withdraws the policies of a deleted file', async () => {
    h = harness();
    writeFileSync(join(h.dir, 'a.yaml'), pa('a', 'STRICT'));
    writeFileSync(join(h.dir, 'b.yaml'), ap('b'));
    await h.store.start();
    rmSync(join(h.dir, 'b.yaml'));
    expect(await h.store.reload()).to.equal(true);
    expect(names(h.store.current())).to.deep.equal(['a']);
  });

  it('dates undated policies by when their file was first seen, and keeps that date across edits', async () => {
    h = harness();
    const file = join(h.dir, 'p.yaml');
    writeFileSync(file, pa('p', 'STRICT'));
    const seen = new Date('2021-03-04T05:06:07Z');
    utimesSync(file, seen, seen);
    await h.store.start();
    expect(h.store.current().peerAuthentications[0]!.metadata.creationTimestamp).to.equal(seen.toISOString());
    writeFileSync(file, pa('p', 'DISABLE'));
    await h.store.reload();
    expect(h.store.current().peerAuthentications[0]!.metadata.creationTimestamp).to.equal(seen.toISOString());
    writeFileSync(file, pa('p', 'DISABLE', '  creationTimestamp: "2019-01-01T00:00:00Z"\n'));
    await h.store.reload();
    expect(h.store.current().peerAuthentications[0]!.metadata.creationTimestamp).to.equal('2019-01-01T00:00:00.000Z');
  });

  it('keeps one copy of a policy defined in two files: the first file by name', async () => {
    h = harness();
    writeFileSync(join(h.dir, 'a.yaml'), pa('same', 'STRICT'));
    writeFileSync(join(h.dir, 'b.yaml'), pa('same', 'DISABLE'));
    await h.store.start();
    expect(h.store.current().peerAuthentications.map((p) => p.mtlsMode)).to.deep.equal(['STRICT']);
    expect(h.store.status().duplicates).to.have.length(1);
    expect(h.store.status().duplicates[0]).to.contain(POLICY_CODES.DUPLICATE);
  });

  it('keeps every policy in force when the directory becomes unreadable', async () => {
    h = harness();
    writeFileSync(join(h.dir, 'a.yaml'), pa('a', 'STRICT'));
    await h.store.start();
    const moved = h.dir + '-moved';
    renameSync(h.dir, moved);
    try {
      expect(await h.store.reload()).to.equal(false);
      expect(names(h.store.current())).to.deep.equal(['a']);
      expect(h.store.status().dirError).to.contain(h.dir);
    } finally {
      renameSync(moved, h.dir);
    }
    await h.store.reload();
    expect(h.store.status().dirError).to.equal(null);
  });

  it('keeps the last good version of a file that becomes unreadable', async function () {
    if (process.getuid?.() === 0) {
      // root reads files whatever their mode; simulate the failure through the fs seam instead.
      let fail = false;
      h = harness({}, { ...nodePolicyFs, readFile: async (p) => { if (fail) throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' }); return nodePolicyFs.readFile(p); } });
      writeFileSync(join(h.dir, 'a.yaml'), pa('a', 'STRICT'));
      await h.store.start();
      fail = true;
      writeFileSync(join(h.dir, 'a.yaml'), pa('a', 'DISABLE'));
      await h.store.reload();
      await h.store.reload();
      expect(h.rejected, 'a lasting read error is reported once').to.deep.equal(['a.yaml']);
      expect(h.store.current().peerAuthentications[0]!.mtlsMode).to.equal('STRICT');
      expect(h.store.status().files[0]!.errors.join()).to.contain(POLICY_CODES.FILE);
      fail = false;
      await h.store.reload();
      expect(h.store.current().peerAuthentications[0]!.mtlsMode).to.equal('DISABLE');
      return;
    }
    h = harness();
    const file = join(h.dir, 'a.yaml');
    writeFileSync(file, pa('a', 'STRICT'));
    await h.store.start();
    chmodSync(file, 0o000);
    await h.store.reload();
    expect(names(h.store.current())).to.deep.equal(['a']);
    expect(h.store.status().files[0]!.errors.join()).to.contain(POLICY_CODES.FILE);
    chmodSync(file, 0o644);
  });

  it('picks up an edit through the directory watch', async () => {
    h = harness({ rescanIntervalMs: 0, debounceMs: 20 });
    writeFileSync(join(h.dir, 'p.yaml'), pa('p', 'STRICT'));
    await h.store.start();
    expect(h.store.status().watching).to.equal(true);
    const next = nextChange(h.store);
    writeFileSync(join(h.dir, 'p.yaml'), pa('p', 'PERMISSIVE'));
    const set = await next;
    expect(set.peerAuthentications[0]!.mtlsMode).to.equal('PERMISSIVE');
  });

  it('falls back to the periodic rescan when the directory cannot be watched', async () => {
    h = harness({ rescanIntervalMs: 30 }, { ...nodePolicyFs, watch: () => { throw new Error('ENOSYS: watch unsupported'); } });
    writeFileSync(join(h.dir, 'p.yaml'), pa('p', 'STRICT'));
    await h.store.start();
    expect(h.store.status().watching).to.equal(false);
    expect(h.logs.some((l) => l['msg'] === 'cannot watch the policy dir; relying on the periodic rescan')).to.equal(true);
    const next = nextChange(h.store);
    writeFileSync(join(h.dir, 'q.yaml'), ap('q'));
    expect(names(await next)).to.deep.equal(['p', 'q']);
  });

  it('loads and then watches a directory that appears after start', async () => {
    h = harness({ rescanIntervalMs: 30 });
    const later = join(h.dir, 'later');
    const store = new PolicyStore({ dir: later, rescanIntervalMs: 30, debounceMs: 20 }, { logger: createLogger({ component: 'policy', sink: { write: () => undefined } }), now: () => NOW });
    try {
      await store.start();
      expect(store.status().dirError).to.contain(later);
      expect(store.status().watching).to.equal(false);
      const next = nextChange(store);
      mkdirSync(later);
      writeFileSync(join(later, 'p.yaml'), pa('p', 'STRICT'));
      expect(names(await next)).to.deep.equal(['p']);
      expect(store.status().dirError).to.equal(null);
      expect(store.status().watching).to.equal(true);
    } finally {
      store.close();
    }
  });

  describe('first load (fails closed)', () => {
    it('Should not be servable while a file fails validation at first load, and become servable, telling listeners, once it is fixed', async () => {
      h = harness();
      const bad = join(h.dir, 'bad.yaml');
      writeFileSync(join(h.dir, 'good.yaml'), ap('g'));
      writeFileSync(bad, pa('p', 'BLAH'));
      await h.store.start();
      expect(h.store.servable()).to.equal(false);
      expect(h.store.status().servable).to.equal(false);
      // The content does not change when the broken file is removed, yet listeners must hear the store is servable.
      const next = nextChange(h.store, 2000);
      rmSync(bad);
      expect(await h.store.reload()).to.equal(true);
      expect(names(await next)).to.deep.equal(['g']);
      expect(h.store.servable()).to.equal(true);
      expect(h.logs.some((l) => l['msg'] === 'every policy file validated: policies are served')).to.equal(true);
    });

    it('Should stay servable when a later edit fails validation: its last good version is served', async () => {
      h = harness();
      const file = join(h.dir, 'p.yaml');
      writeFileSync(file, pa('p', 'STRICT'));
      await h.store.start();
      expect(h.store.servable()).to.equal(true);
      writeFileSync(file, pa('p', 'BLAH'));
      await h.store.reload();
      expect(h.store.servable()).to.equal(true);
      expect(names(h.store.current())).to.deep.equal(['p']);
    });

    it('Should not be servable while the directory cannot be read at first load', async () => {
      h = harness();
      const store = new PolicyStore({ dir: join(h.dir, 'missing'), rescanIntervalMs: 0 }, { logger: createLogger({ component: 'policy', sink: { write: () => undefined } }), now: () => NOW });
      try {
        await store.start();
        expect(store.servable()).to.equal(false);
      } finally {
        store.close();
      }
    });

    it('Should serve the valid files at once with allowInvalidAtStart, and warn what that risks', async () => {
      h = harness({ allowInvalidAtStart: true });
      writeFileSync(join(h.dir, 'good.yaml'), ap('g'));
      writeFileSync(join(h.dir, 'bad.yaml'), pa('p', 'BLAH'));
      await h.store.start();
      expect(h.store.servable()).to.equal(true);
      expect(names(h.store.current())).to.deep.equal(['g']);
      const warn = h.logs.find((l) => l['level'] === 'warn' && String(l['msg']).includes('allowInvalidAtStart'));
      expect(warn, 'a warning naming the risk').to.not.equal(undefined);
      expect(warn!['rejected']).to.deep.equal(['bad.yaml']);
    });
  });
});

describe('PolicyStore reading files that are being written', () => {
  let h: Harness;
  afterEach(() => h.cleanup());

  const docs = (...names: string[]): string => [pa('p', 'STRICT'), ...names.map(ap)].join('---\n');
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  /** Rescans every 5 ms while `write` runs (a watch event or the periodic rescan may come at any moment), then once more. */
  async function rescanDuring(write: () => Promise<void>): Promise<void> {
    let writing = true;
    const done = write().finally(() => (writing = false));
    while (writing) {
      await h.store.reload();
      await sleep(5);
    }
    await done;
    await h.store.reload();
  }

  it('Should never load the prefix of a file a slow writer truncates and rewrites in place', async () => {
    h = harness({ settleMs: 100 });
    const file = join(h.dir, 'mesh.yaml');
    writeFileSync(file, docs('d1', 'd2'));
    utimesSync(file, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    await h.store.start();
    expect(names(h.store.current())).to.deep.equal(['d1', 'd2', 'p']);
    // Each chunk ends a YAML document, so every prefix is a valid policy file, just not this one.
    const chunks = [pa('p', 'STRICT') + '---\n', ap('d1') + '---\n', ap('d3')];
    await rescanDuring(async () => {
      const fd = openSync(file, 'w');
      for (const c of chunks) {
        writeSync(fd, c);
        await sleep(30);
      }
      closeSync(fd);
    });
    const seen = h.changes.map(names);
    expect(seen, 'every set ever served').to.deep.equal([['d1', 'd2', 'p'], ['d1', 'd3', 'p']]);
  });

  it('Should take a file renamed into place whole, with no prefix in between', async () => {
    h = harness({ settleMs: 100 });
    const file = join(h.dir, 'mesh.yaml');
    writeFileSync(file, docs('d1', 'd2'));
    await h.store.start();
    await rescanDuring(async () => {
      const tmpFile = join(h.dir, '.mesh.yaml.tmp');
      const fd = openSync(tmpFile, 'w');
      for (const c of [pa('p', 'STRICT') + '---\n', ap('d1') + '---\n', ap('d3')]) {
        writeSync(fd, c);
        await sleep(30);
      }
      closeSync(fd);
      renameSync(tmpFile, file);
    });
    expect(h.changes.map(names)).to.deep.equal([['d1', 'd2', 'p'], ['d1', 'd3', 'p']]);
  });
});
