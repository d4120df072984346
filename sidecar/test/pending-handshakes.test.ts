import { expect } from 'chai';
import { DEFAULT_MAX_PENDING_HANDSHAKES, PendingHandshakes, isSlot, type HandshakeSlot } from './helpers/harness';

describe('The pending handshake cap', () => {
  it('Should give slots up to the cap, refuse beyond it, and take one more once a slot is released', () => {
    const p = new PendingHandshakes(3);
    const slots = [p.take(), p.take(), p.take()];
    expect(slots.every(isSlot)).to.equal(true);
    expect(p.size).to.equal(3);
    expect(isSlot(p.take())).to.equal(false);
    (slots[0] as HandshakeSlot).release();
    expect(p.size).to.equal(2);
    expect(isSlot(p.take())).to.equal(true);
  });

  it('Should count a slot released twice once', () => {
    const p = new PendingHandshakes(2);
    const a = p.take() as HandshakeSlot;
    p.take();
    a.release();
    a.release();
    expect(p.size).to.equal(1);
  });

  it('Should mark the first refusal of a burst, and a new burst only after the count fell to half the cap', () => {
    const p = new PendingHandshakes(4);
    const slots = [p.take(), p.take(), p.take(), p.take()] as HandshakeSlot[];
    expect(p.take()).to.deep.equal({ firstOfBurst: true });
    expect(p.take()).to.deep.equal({ firstOfBurst: false });
    slots[0]!.release();
    expect(isSlot(p.take())).to.equal(true);
    expect(p.take()).to.deep.equal({ firstOfBurst: false });
    for (const s of slots.slice(1)) s.release();
    expect(p.size).to.equal(1);
    for (let i = 0; i < 3; i++) p.take();
    expect(p.take()).to.deep.equal({ firstOfBurst: true });
  });

  it('Should report the end of a burst once, when the count falls to half the cap after refusals', () => {
    let ends = 0;
    const p = new PendingHandshakes(4, () => ends++);
    const slots = [p.take(), p.take(), p.take(), p.take()] as HandshakeSlot[];
    slots[0]!.release();
    slots[1]!.release();
    expect(ends, 'no refusal yet: no burst').to.equal(0);
    const more = [p.take(), p.take()] as HandshakeSlot[];
    p.take();
    more[0]!.release();
    expect(ends).to.equal(0);
    more[1]!.release();
    slots[2]!.release();
    expect(ends).to.equal(1);
    slots[3]!.release();
    expect(ends).to.equal(1);
  });

  it('Should default to 1024 and refuse a cap that is not a positive integer', () => {
    expect(new PendingHandshakes().limit).to.equal(DEFAULT_MAX_PENDING_HANDSHAKES).and.equal(1024);
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new PendingHandshakes(bad), String(bad)).to.throw(RangeError);
  });

  it('Should tell a drain once no connection is pending any more, or when its time is up', async () => {
    const p = new PendingHandshakes(4);
    await p.whenNone(10_000);
    const a = p.take() as { release(): void };
    const b = p.take() as { release(): void };
    let done = false;
    const waiting = p.whenNone(10_000).then(() => (done = true));
    a.release();
    await new Promise((r) => setImmediate(r));
    expect(done, 'one still pending').to.equal(false);
    b.release();
    await waiting;
    p.take();
    await p.whenNone(50);
    expect(p.size, 'it gave up waiting with one still pending').to.equal(1);
  });
});
