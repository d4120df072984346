/**
 * `trellis token create` as a user runs it (the real binary): what it binds
 * into the token, and the usage errors that keep a token the control plane
 * would refuse from being minted.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import { makeTmpDir, trellisSync } from '@trellis/testkit';
import { initCa, TD } from './control-plane-harness';

describe('trellis token create (real binary)', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  const id = `spiffe://${TD}/ns/shop/sa/payments`;

  before(() => {
    tmp = makeTmpDir('trellis-token-cli-');
    caDir = join(tmp.dir, 'ca');
    initCa(caDir);
  });
  after(() => tmp?.cleanup());

  it('Should bind the service, labels and inbound ports into the signed token', () => {
    const r = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', id, '--service', 'payments', '--labels', 'app=payments,tier=backend', '--ports', '8443,8080']);
    expect(r.status, r.stderr).to.equal(0);
    const payload = JSON.parse(Buffer.from(r.stdout.trim().slice('tj1.'.length).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).to.deep.include({ sub: id, svc: 'payments', labels: { app: 'payments', tier: 'backend' }, ports: [8080, 8443], uses: 1 });
  });

  it('Should mint a token that attests the identity alone when no metadata flag is given', () => {
    const r = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', id]);
    expect(r.status, r.stderr).to.equal(0);
    const payload = JSON.parse(Buffer.from(r.stdout.trim().slice('tj1.'.length).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).to.not.have.any.keys('svc', 'labels', 'ports');
  });

  const usage: Array<[string, string[], RegExp]> = [
    ['--ports without --service', ['--ports', '8080'], /--ports needs --service/],
    ['a port out of range', ['--service', 'payments', '--ports', '70000'], /--ports takes port numbers 1\.\.65535.*"70000"/],
    ['a port that is not a number', ['--service', 'payments', '--ports', '80a'], /--ports takes port numbers/],
    ['a port given twice', ['--service', 'payments', '--ports', '8080,8080'], /--ports: 8080 is given twice/],
    ['a label that is not KEY=VALUE', ['--labels', 'app'], /--labels takes key=value pairs.*"app"/],
    ['a label given twice', ['--labels', 'app=a,app=b'], /--labels: label "app" is given twice/],
    ['a label value over 63 characters', ['--labels', `app=${'x'.repeat(64)}`], /--labels: labels\.app: value longer than 63 characters/],
    ['a label key Kubernetes would refuse', ['--labels', 'bad key=x'], /--labels: labels\.bad key: key name/],
    ['a service name callers could not write', ['--service', 'Payments_1'], /--service: service: "Payments_1" is not a DNS-style name/],
  ];
  for (const [what, flags, message] of usage) {
    it(`Should refuse ${what} with a usage error naming the flag (exit 2) and print no token`, () => {
      const r = trellisSync(['token', 'create', '--ca-dir', caDir, '--spiffe-id', id, ...flags]);
      expect(r.status, r.stderr).to.equal(2);
      expect(r.stderr).to.match(message);
      expect(r.stdout).to.equal('');
    });
  }
});
