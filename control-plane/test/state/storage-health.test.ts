import { expect } from 'chai';
import { makeTmpDir } from '@trellis/testkit';
import { ControlPlaneError, ControlPlaneErrorCode } from '../../src/errors/control-plane-error';
import { StorageHealth, type FailingStore } from '../../src/state/storage-health';

const refused = (): ControlPlaneError => new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, 'join token use could not be recorded: forbidden', { reason: 'TRELLIS_K8S_FORBIDDEN' });
const stores = (h: StorageHealth): string[] => h.current().map((f) => f.store).sort();

/** Resolves once `cond` holds, checking after each turn of the event loop (probes are promises). */
async function settled(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !cond(); i++) await new Promise((r) => setImmediate(r));
}

describe('StorageHealth (what makes the control plane not ready)', () => {
  const tmp = makeTmpDir('trellis-storage-health-');
  after(() => tmp.cleanup());

  it('Should let a replica report written on the API server clear the documents updated as it is, but not the create-only join-token uses and attestation records', () => {
    const h = new StorageHealth(tmp.dir, { sharedBackend: 'api-server' });
    for (const s of ['join-token-uses', 'attestations', 'revocations', 'reissue-orders'] as const) h.record(s, refused());
    h.record('replica-report', null);
    expect(stores(h)).to.deep.equal(['attestations', 'join-token-uses']);
  });

  it('Should let a replica report written in the CA dir clear every shared store', () => {
    const h = new StorageHealth(tmp.dir, { sharedBackend: 'ca-dir' });
    for (const s of ['join-token-uses', 'attestations', 'revocations'] as const) h.record(s, refused());
    h.record('replica-report', null);
    expect(stores(h)).to.deep.equal([]);
  });

  it("Should clear join-token uses on the API server when their probe can write, and keep them failing while it cannot", async () => {
    let canWrite = false;
    let probes = 0;
    const changes: FailingStore[][] = [];
    const h = new StorageHealth(tmp.dir, {
      sharedBackend: 'api-server',
      probes: {
        'join-token-uses': async () => {
          probes++;
          if (!canWrite) throw refused();
        },
      },
      onChange: (f) => changes.push([...f]),
    });
    h.probe();
    expect(probes, 'nothing failing: no probe').to.equal(0);
    h.record('join-token-uses', refused());
    h.probe();
    await settled(() => probes === 1);
    await new Promise((r) => setImmediate(r));
    expect(stores(h)).to.deep.equal(['join-token-uses']);
    expect(h.reasons()[0]).to.match(/join-token-uses .*TRELLIS_K8S_FORBIDDEN/);
    canWrite = true;
    h.probe();
    await settled(() => h.current().length === 0);
    expect(probes).to.equal(2);
    expect(stores(h)).to.deep.equal([]);
    expect(changes.at(-1), 'readiness told it is back').to.deep.equal([]);
  });

  it('Should not start a second probe of a store while one is still running', async () => {
    let release: () => void = () => undefined;
    let probes = 0;
    const h = new StorageHealth(tmp.dir, {
      sharedBackend: 'api-server',
      probes: {
        'join-token-uses': () => {
          probes++;
          return new Promise<void>((r) => (release = r));
        },
      },
    });
    h.record('join-token-uses', refused());
    h.probe();
    h.probe();
    expect(probes).to.equal(1);
    release();
    await settled(() => h.current().length === 0);
    expect(stores(h)).to.deep.equal([]);
  });
});
