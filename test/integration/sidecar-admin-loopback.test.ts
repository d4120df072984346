/**
 * The sidecar's admin port (`/config_dump`, `POST /quitquitquit`) has no
 * authentication, so it stays on loopback: the real `trellis sidecar`
 * refuses a non-loopback `--admin` unless `--admin-allow-remote` says the
 * operator means it.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, TestCa, trellisSync } from '@trellis/testkit';

describe('trellis sidecar keeps its admin port on loopback (real binary)', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let base: string[];

  before(async () => {
    tmp = makeTmpDir('trellis-sidecar-admin-');
    writeFileSync(join(tmp.dir, 'root.pem'), (await TestCa.create('example.org')).root.pem);
    writeFileSync(join(tmp.dir, 'token'), 'x\n');
    base = ['sidecar', '--control-plane', '127.0.0.1:1', '--ca-bundle', join(tmp.dir, 'root.pem'), '--token-file', join(tmp.dir, 'token'), '--namespace', 'shop', '--service', 'web', '--trust-domain', 'example.org'];
  });
  after(() => tmp?.cleanup());

  for (const admin of ['0.0.0.0:0', '[::]:0']) {
    it(`Should refuse to start with --admin ${admin} without --admin-allow-remote, exiting 2 with the reason`, () => {
      const r = trellisSync([...base, '--admin', admin], { timeoutMs: 15_000 });
      expect(r.status, r.stderr).to.equal(2);
      expect(r.stderr).to.contain('not a loopback address');
      expect(r.stderr).to.contain('--admin-allow-remote');
    });
  }

  it('Should refuse a non-loopback admin address from TRELLIS_ADMIN too', () => {
    const r = trellisSync(base, { env: { TRELLIS_ADMIN: '0.0.0.0:0' }, timeoutMs: 15_000 });
    expect(r.status, r.stderr).to.equal(1);
    expect(r.stderr).to.contain('$TRELLIS_ADMIN');
    expect(r.stderr).to.contain('TRELLIS_SIDECAR_BAD_CONFIG');
  });
});
