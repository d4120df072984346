import { expect } from 'chai';
import { ChunkPool } from '../src/proxy/chunk-pool';

describe('ChunkPool (memory for bytes in flight)', () => {
  it('Should hand out copies that keep their bytes while later chunks are cut', () => {
    const pool = new ChunkPool(64, 4);
    const chunks: Buffer[] = [];
    for (let i = 0; i < 10; i++) {
      const src = Buffer.alloc(20, i);
      chunks.push(pool.slabFor(20).copyIn(src, 20));
      src.fill(0xff); // the source (the shared read buffer) is reused at once
    }
    chunks.forEach((c, i) => expect([...c]).to.deep.equal(new Array(20).fill(i)));
  });

  it('Should copy only the first n bytes of the source', () => {
    const pool = new ChunkPool(64, 4);
    const c = pool.slabFor(3).copyIn(Buffer.from('abcdef'), 3);
    expect(c.toString()).to.equal('abc');
  });

  it('Should never reuse a slab while a chunk cut from it is unreleased', () => {
    const pool = new ChunkPool(64, 4);
    const first = pool.slabFor(40);
    const held = first.copyIn(Buffer.alloc(40, 1), 40);
    const second = pool.slabFor(40);
    expect(second).to.not.equal(first);
    const c = second.copyIn(Buffer.alloc(40, 2), 40);
    second.done();
    // `first` is full and still has a chunk out: cutting more must not touch it.
    for (let i = 0; i < 8; i++) {
      const s = pool.slabFor(40);
      expect(s).to.not.equal(first);
      s.copyIn(Buffer.alloc(40, 3), 40);
      s.done();
    }
    expect([...held]).to.deep.equal(new Array(40).fill(1));
    expect(c.length).to.equal(40);
  });

  it('Should reuse a slab once every chunk cut from it has been released', () => {
    const pool = new ChunkPool(64, 4);
    const first = pool.slabFor(40);
    first.copyIn(Buffer.alloc(40, 1), 40);
    const second = pool.slabFor(40); // retires `first` with one chunk out
    expect(pool.spareCount).to.equal(0);
    first.done();
    expect(pool.spareCount).to.equal(1);
    second.copyIn(Buffer.alloc(40, 2), 40);
    expect(pool.slabFor(40)).to.equal(first);
  });

  it('Should keep cutting from the current slab when it is full but nothing is out', () => {
    const pool = new ChunkPool(64, 4);
    const s = pool.slabFor(40);
    s.copyIn(Buffer.alloc(40), 40);
    s.done();
    expect(pool.slabFor(40)).to.equal(s);
    expect(s.free).to.equal(64);
  });

  it('Should keep at most maxSpare released slabs', () => {
    const pool = new ChunkPool(64, 2);
    const slabs = [];
    for (let i = 0; i < 5; i++) {
      const s = pool.slabFor(64);
      s.copyIn(Buffer.alloc(64), 64);
      slabs.push(s);
    }
    pool.slabFor(64);
    for (const s of slabs) s.done();
    expect(pool.spareCount).to.equal(2);
  });
});
