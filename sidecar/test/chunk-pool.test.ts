import { expect } from 'chai';
import { ChunkLane, SlabStore } from '../src/proxy/chunk-pool';

describe('Chunk lanes (memory for bytes in flight)', () => {
  it('Should hand out copies that keep their bytes while later chunks are cut', () => {
    const lane = new ChunkLane(new SlabStore(64, 4));
    const chunks: Buffer[] = [];
    for (let i = 0; i < 10; i++) {
      const src = Buffer.alloc(20, i);
      chunks.push(lane.slabFor(20).copyIn(src, 20));
      src.fill(0xff); // the source (the shared read buffer) is reused at once
    }
    chunks.forEach((c, i) => expect([...c]).to.deep.equal(new Array(20).fill(i)));
  });

  it('Should copy only the first n bytes of the source', () => {
    const lane = new ChunkLane(new SlabStore(64, 4));
    expect(lane.slabFor(3).copyIn(Buffer.from('abcdef'), 3).toString()).to.equal('abc');
  });

  it('Should never reuse a slab while a chunk cut from it is unreleased', () => {
    const store = new SlabStore(64, 4);
    const lane = new ChunkLane(store);
    const other = new ChunkLane(store);
    const first = lane.slabFor(40);
    const held = first.copyIn(Buffer.alloc(40, 1), 40);
    for (let i = 0; i < 8; i++) {
      for (const l of [lane, other]) {
        const s = l.slabFor(40);
        expect(s).to.not.equal(first);
        s.copyIn(Buffer.alloc(40, 3), 40);
        s.done();
      }
    }
    expect([...held]).to.deep.equal(new Array(40).fill(1));
  });

  it('Should not keep a slab made larger than the store size for one big read as a spare', () => {
    const store = new SlabStore(64, 4);
    const lane = new ChunkLane(store);
    const big = lane.slabFor(200);
    expect(big.buf.length).to.be.at.least(200);
    big.copyIn(Buffer.alloc(200, 7), 200);
    big.done();
    expect(store.spareCount).to.equal(0);
    const normal = lane.slabFor(64);
    normal.copyIn(Buffer.alloc(64), 64);
    normal.done();
    expect(store.spareCount).to.equal(1);
  });

  it('Should give a slab back to the store once every chunk cut from it is released, and reuse it', () => {
    const store = new SlabStore(64, 4);
    const lane = new ChunkLane(store);
    const s = lane.slabFor(10);
    s.copyIn(Buffer.alloc(10), 10);
    s.copyIn(Buffer.alloc(10), 10);
    s.done();
    expect(store.spareCount).to.equal(0);
    s.done();
    expect(store.spareCount).to.equal(1);
    expect(s.free).to.equal(64);
    expect(new ChunkLane(store).slabFor(64)).to.equal(s);
  });

  it('Should hold no slab for an idle lane: its slab goes back once its writes are done', () => {
    const store = new SlabStore(64, 4);
    const a = new ChunkLane(store);
    const s = a.slabFor(10);
    s.copyIn(Buffer.alloc(10), 10);
    s.done();
    // Another lane now gets that slab; `a` takes a fresh one next time.
    const b = new ChunkLane(store);
    expect(b.slabFor(10)).to.equal(s);
    expect(a.slabFor(10)).to.not.equal(s);
  });

  it('Should not let one lane pin slabs another lane cuts from', () => {
    const store = new SlabStore(64, 4);
    const stuck = new ChunkLane(store);
    const busy = new ChunkLane(store);
    const pinned = stuck.slabFor(1);
    pinned.copyIn(Buffer.alloc(1), 1); // never released: a peer that stopped reading
    const seen = new Set();
    for (let i = 0; i < 50; i++) {
      const s = busy.slabFor(40);
      s.copyIn(Buffer.alloc(40), 40);
      s.done();
      seen.add(s);
    }
    expect(seen.has(pinned)).to.equal(false);
    // The busy lane cycles through released slabs instead of allocating one per chunk.
    expect(seen.size).to.be.lessThan(3);
  });

  it('Should keep at most maxSpare released slabs', () => {
    const store = new SlabStore(64, 2);
    const lane = new ChunkLane(store);
    const slabs = [];
    for (let i = 0; i < 5; i++) {
      const s = lane.slabFor(64);
      s.copyIn(Buffer.alloc(64), 64);
      slabs.push(s);
    }
    for (const s of slabs) s.done();
    expect(store.spareCount).to.equal(2);
  });

  it('Should serve a chunk larger than a slab from a slab of its own', () => {
    const lane = new ChunkLane(new SlabStore(64, 2));
    const big = Buffer.alloc(100, 7);
    expect([...lane.slabFor(100).copyIn(big, 100)]).to.deep.equal([...big]);
  });
});
