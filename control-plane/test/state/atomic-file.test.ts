import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { createFileExclusive, writeFilesAtomic } from '../../src/state/atomic-file';
import { JoinTokenStore } from '../../src/auth/join-token-store';

describe('atomic state files', () => {
  let tmp: { dir: string; cleanup(): void };
  beforeEach(() => (tmp = makeTmpDir('trellis-atomic-')));
  afterEach(() => tmp.cleanup());

  it('Should leave the previous content and no temp file when a write fails', () => {
    writeFileSync(join(tmp.dir, 'state.json'), 'old');
    expect(() => writeFilesAtomic(tmp.dir, [{ name: 'state.json', contents: 'new', mode: 0o644 }, { name: 'other.json', contents: 42 as unknown as string, mode: 0o644 }])).to.throw(TypeError);
    expect(readFileSync(join(tmp.dir, 'state.json'), 'utf8')).to.equal('old');
    expect(readdirSync(tmp.dir)).to.deep.equal(['state.json']);
  });

  it('Should create a file only once, whole, and say when it already existed', () => {
    const p = join(tmp.dir, 'use.1');
    expect(createFileExclusive(p, 'first')).to.equal(true);
    expect(createFileExclusive(p, 'second')).to.equal(false);
    expect(readFileSync(p, 'utf8')).to.equal('first');
    expect(readdirSync(tmp.dir)).to.deep.equal(['use.1']);
  });
});

describe('join-token use records', () => {
  let tmp: { dir: string; cleanup(): void };
  beforeEach(() => (tmp = makeTmpDir('trellis-jt-')));
  afterEach(() => tmp.cleanup());
  const ID = '0b5e0b6e-8f8e-4c44-9c1a-6d0f2b1f0a11';

  it('Should grant each use once, refuse the next with TRELLIS_CP_TOKEN_SPENT, and grant a given-back use again', async () => {
    const store = new JoinTokenStore(tmp.dir);
    expect(await store.consume(ID, 2, Date.now() + 60_000)).to.equal(1);
    expect(await store.consume(ID, 2, Date.now() + 60_000)).to.equal(2);
    const spent = await store.consume(ID, 2, 0).catch((e: { code: string }) => e.code);
    expect(spent).to.equal('TRELLIS_CP_TOKEN_SPENT');
    await store.release(ID, 1);
    expect(await store.consume(ID, 2, 0)).to.equal(1);
    expect(JSON.parse(readFileSync(join(tmp.dir, 'join-tokens', 'used', `${ID}.2`), 'utf8'))).to.have.keys('usedAt', 'expiresAt');
  });

  it('Should not count an empty use record (a write that failed in an older release) as spent', async () => {
    const used = join(tmp.dir, 'join-tokens', 'used');
    mkdirSync(used, { recursive: true });
    writeFileSync(join(used, `${ID}.1`), '');
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(used, `${ID}.1`), old, old);
    expect(await new JoinTokenStore(tmp.dir).consume(ID, 1, 0)).to.equal(1);
    expect(readFileSync(join(used, `${ID}.1`), 'utf8')).to.contain('usedAt');
  });
});
