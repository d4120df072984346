/**
 * The test kit reads the ports a real `trellis` process bound from port 0
 * out of the line it logs, so tests hand their children port 0 instead of a
 * port picked free beforehand (which another process can take first).
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { controlPlanePorts, controlPlanePortsOf, httpGet, injectorPort, injectorPortOf, makeTmpDir, outputLine, portOf, ProcessGroup, sidecarPorts, sidecarPortsOf } from '@trellis/testkit';
import { initCa } from './control-plane-harness';

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('The ports a trellis process bound from port 0 (real processes)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-bound-ports-');
  const group = new ProcessGroup(tmp.dir);

  before(() => {
    initCa(join(tmp.dir, 'ca'));
    mkdirSync(join(tmp.dir, 'policies'));
    writeFileSync(join(tmp.dir, 'token'), 'not-a-token\n', { mode: 0o600 });
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs(25);
  });
  after(async () => {
    await group.killAllAndWait();
    tmp.cleanup();
  });

  it('Should read the discovery and admin ports a control plane bound from its ready line, both listening', async () => {
    const cp = group.spawn(['control-plane', '--ca-dir', join(tmp.dir, 'ca'), '--policy-dir', join(tmp.dir, 'policies'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    const ports = await controlPlanePorts(cp);
    expect(ports.listen).to.not.equal(ports.admin);
    expect(await accepts(ports.listen), 'the discovery port').to.equal(true);
    expect(await accepts(ports.admin), 'the admin port').to.equal(true);
  });

  it('Should read the inbound, outbound and admin ports a sidecar bound from its listening line, each in flag order and listening', async () => {
    // Nothing needs to answer on the control plane's address: the sidecar binds before it dials.
    const sidecar = group.spawn(['sidecar', '--service', 'web', '--control-plane', '127.0.0.1:1', '--ca-bundle', join(tmp.dir, 'ca', 'root.pem'), '--token-file', join(tmp.dir, 'token'),
      '--trust-domain', 'example.org', '--namespace', 'shop', '--service-account', 'web', '--admin', '127.0.0.1:0',
      '--inbound', '127.0.0.1:0=8080/http', '--inbound', '127.0.0.1:0=8081', '--outbound', '127.0.0.1:0=cart']);
    const ports = await sidecarPorts(sidecar);
    expect(ports.inbound).to.have.length(2);
    expect(ports.outbound).to.have.length(1);
    const all = [...ports.inbound, ...ports.outbound, ports.admin!];
    expect(new Set(all).size, `distinct ports ${all}`).to.equal(4);
    for (const p of all) expect(await accepts(p), `port ${p}`).to.equal(true);
    // The admin port is the sidecar's own: it answers /ready (not ready: it has no SVID).
    expect((await httpGet(ports.admin!, '/ready')).status).to.equal(503);
  });

  it('Should read the port an injector bound from the line it prints on stdout, and it serves TLS there', async () => {
    const injector = group.spawn(['injector', '--ca-dir', join(tmp.dir, 'ca'), '--listen', '127.0.0.1:0']);
    const port = await injectorPort(injector);
    expect(await accepts(port)).to.equal(true);
  });

  it('Should fail naming the process and its last lines when it exits before logging the line', async () => {
    const sidecar = group.spawn(['sidecar', '--service', 'web', '--control-plane', '127.0.0.1:1', '--ca-bundle', join(tmp.dir, 'no-such-bundle.pem'), '--token-file', join(tmp.dir, 'token'),
      '--trust-domain', 'example.org', '--namespace', 'shop', '--service-account', 'web', '--admin', '127.0.0.1:0']);
    const err = await outputLine(sidecar, '"msg":"sidecar listening"').then(() => undefined, (e: Error) => e);
    expect(err?.message).to.match(/^`trellis sidecar` \(pid \d+\) exited \(\d+\) before printing "msg":"sidecar listening" on stderr; its last lines there:\n/);
    expect(err?.message).to.contain('no-such-bundle.pem');
  });

  it('Should read a port from IPv4 and IPv6 addresses and an inbound entry, and name a line without addresses', () => {
    expect(portOf('127.0.0.1:15001')).to.equal(15001);
    expect(portOf('[::1]:15001')).to.equal(15001);
    expect(() => portOf('127.0.0.1')).to.throw('no port in the address "127.0.0.1"');
    expect(sidecarPortsOf('{"msg":"sidecar listening","inbound":["127.0.0.1:20001=8080/http"],"outbound":[]}')).to.deep.equal({ inbound: [20001], outbound: [], admin: undefined });
    expect(() => controlPlanePortsOf('{"msg":"control plane ready"}')).to.throw('names no listen and admin address');
    expect(() => sidecarPortsOf('sidecar listening')).to.throw('not a JSON log line');
    expect(injectorPortOf('injector listening on https://[::1]:15017/inject')).to.equal(15017);
    expect(() => injectorPortOf('injector ready')).to.throw("not the injector's listening line");
  });
});
