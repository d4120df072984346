import { expect } from 'chai';
import { createPublicKey } from 'node:crypto';
import { RENEWAL_TYPE_URL, silentLogger, type RenewalResource } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { IdentityManager } from '../src/identity/identity-manager';
import { SidecarState } from '../src/state/sidecar-state';
import { signCsr } from './helpers/fixture';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/shop/sa/web`;

type Handler = (resources: ReadonlyArray<{ name: string; body: RenewalResource }>, version: string) => void;

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('IdentityManager renewal requested by the control plane', function () {
  this.timeout(20_000);
  let ca: TestCa;
  let m: IdentityManager | undefined;
  before(async () => {
    ca = await TestCa.create(TD);
  });
  afterEach(() => m?.stop());

  async function start(): Promise<{ state: SidecarState; handler: Handler; issued: string[] }> {
    const state = new SidecarState();
    const issued: string[] = [];
    let handler: Handler | undefined;
    m = new IdentityManager({
      state,
      issue: async (csr) => {
        const r = await signCsr(ca, csr, 3_600_000, ID);
        issued.push(r.serialHex);
        return r;
      },
      logger: silentLogger,
      clock: () => new Date(),
      spiffeId: ID,
      renewHints: { on: (t, h) => {
        expect(t).to.equal(RENEWAL_TYPE_URL);
        handler = h;
      } },
    });
    await m.start();
    expect(handler, 'the manager registers its renewal handler when constructed').to.not.equal(undefined);
    return { state, handler: handler!, issued };
  }

  const spki = (s: SidecarState): string => createPublicKey(s.current().credentials!.keyPem).export({ type: 'spki', format: 'der' }).toString('hex');

  it('Should renew with a fresh key when asked to renew by now, long before its own schedule, and only once', async () => {
    const { state, handler, issued } = await start();
    const firstKey = spki(state);
    const firstSerial = state.current().credentials!.serialHex;
    const now = new Date().toISOString();
    handler([{ name: 'default', body: { renewBy: now, orderedAt: now, reason: 'reissue' } }], 'v1');
    await until(() => issued.length === 2, 'the requested renewal');
    await until(() => state.current().credentials!.serialHex !== firstSerial, 'the new certificate to be installed');
    expect(spki(state)).to.not.equal(firstKey);
    // The same request seen again (a re-sent version) or withdrawn does not renew again.
    handler([{ name: 'default', body: { renewBy: null, orderedAt: null, reason: '' } }], 'v2');
    await new Promise((r) => setTimeout(r, 200));
    expect(issued).to.have.length(2);
  });

  it('Should renew at a requested instant a little in the future', async () => {
    const { handler, issued } = await start();
    const at = new Date(Date.now() + 300).toISOString();
    handler([{ name: 'default', body: { renewBy: at, orderedAt: new Date().toISOString(), reason: 'root-rotation' } }], 'v1');
    expect(issued).to.have.length(1);
    await until(() => issued.length === 2, 'the requested renewal');
    expect(Date.now()).to.be.at.least(Date.parse(at));
  });

  it('Should not renew when a request is withdrawn before its time', async () => {
    const { handler, issued } = await start();
    handler([{ name: 'default', body: { renewBy: new Date(Date.now() + 300).toISOString(), orderedAt: new Date().toISOString(), reason: 'reissue' } }], 'v1');
    handler([{ name: 'default', body: { renewBy: null, orderedAt: null, reason: '' } }], 'v2');
    await new Promise((r) => setTimeout(r, 600));
    expect(issued).to.have.length(1);
  });

  it('Should reject (NACK) a renewal update that does not carry exactly one resource', async () => {
    const { handler } = await start();
    expect(() => handler([], 'v1')).to.throw().with.property('code', 'TRELLIS_SIDECAR_ISSUE_FAILED');
  });
});
