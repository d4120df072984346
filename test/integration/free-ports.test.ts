/**
 * The test kit's ports: a reservation holds its ports until released (so two
 * suites cannot be handed the same one), and they lie below the kernel's
 * ephemeral range (so no listen(0) or outgoing connection takes one).
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { addressInUse, freePort, reservePorts } from '@trellis/testkit';

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe('Ports for tests', () => {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

  it('Should hold reserved ports against any other listener until released, then let the child bind them', async () => {
    const r = await reservePorts(5);
    expect(new Set(r.ports).size).to.equal(5);
    for (const p of r.ports) expect(await canListen(p), `port ${p} while reserved`).to.equal(false);
    // A second reservation made meanwhile (another suite) never gets one of them.
    const other = await reservePorts(50);
    expect(other.ports.filter((p) => r.ports.includes(p))).to.deep.equal([]);
    await other.release();
    await r.release();
    for (const p of r.ports) expect(await canListen(p), `port ${p} after release`).to.equal(true);
  });

  it('Should pick ports below the kernel\'s ephemeral range, where no listen(0) or outgoing connection lands', async () => {
    const r = await reservePorts(20);
    await r.release();
    for (const p of [...r.ports, await freePort()]) expect(p).to.be.within(1024, low - 1);
  });

  it('Should recognise a child that failed to bind because the port was taken', () => {
    expect(addressInUse('Error: listen EADDRINUSE: address already in use 127.0.0.1:15012')).to.equal(true);
    expect(addressInUse('{"level":"info","msg":"sidecar ready"}')).to.equal(false);
  });
});
