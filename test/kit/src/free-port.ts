/**
 * Ports for tests, without racing other processes for them.
 *
 * A server under the test's control needs none of this: listen on port 0 and
 * read the port back (`server.address().port`; our binaries log the port they
 * bound). A child process that must be told its ports in advance (a `trellis
 * up` mesh file) gets a {@link reservePorts} reservation: each port is held
 * by a listening socket until the test releases it just before the spawn, so
 * no other reservation can take it meanwhile. The ports come from below the
 * kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768+
 * by default): the kernel never hands those out for `listen(0)` or for the
 * local end of an outgoing connection, so after the release only another
 * explicit pick could take one, and the caller retries on EADDRINUSE for that
 * last small window. (The old helper bound port 0 and closed it: the port was
 * an ephemeral one, free for any outgoing connection on the machine to take.)
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** The lowest port the kernel assigns on its own; picks stay below it. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 2048) return low;
  } catch {
    // not Linux: use the IANA dynamic range's start
  }
  return 32768;
}

/** The pool: [20000, ephemeral low), away from the well-known and registered low ports our own examples use. */
function pickCandidate(): number {
  const lo = 20000;
  const hi = Math.max(lo + 1000, ephemeralLow());
  return lo + Math.floor(Math.random() * (hi - lo));
}

function listen(port: number, host: string): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(undefined));
    srv.listen({ port, host, exclusive: true }, () => resolve(srv));
  });
}

/** Ports held by this process until {@link PortReservation.release}. */
export interface PortReservation {
  readonly ports: readonly number[];
  /** Closes the holding sockets; call right before starting the process that binds the ports. */
  release(): Promise<void>;
}

/** Reserves `count` distinct free ports on `host` (held by listening sockets until released). */
export async function reservePorts(count: number, host = '127.0.0.1'): Promise<PortReservation> {
  const held = new Map<number, Server>();
  for (let tries = 0; held.size < count; tries++) {
    if (tries > count * 50) {
      await Promise.all([...held.values()].map((s) => new Promise((r) => s.close(r))));
      throw new Error(`could not reserve ${count} free ports on ${host}`);
    }
    const port = pickCandidate();
    if (held.has(port)) continue;
    const srv = await listen(port, host);
    if (srv) held.set(port, srv);
  }
  return {
    ports: Object.freeze([...held.keys()]),
    release: () => Promise.all([...held.values()].map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined),
  };
}

/**
 * One free port, released at once: for a child process told its port just
 * after. Prefer listening on port 0 where the test owns the server, and
 * {@link reservePorts} when the window before the child binds is long.
 * Picked below the ephemeral range, so only another explicit pick can race it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const r = await reservePorts(1, host);
  await r.release();
  return r.ports[0]!;
}

/** True when a process's output says it could not bind because the address was taken. */
export function addressInUse(output: string): boolean {
  return /EADDRINUSE|address already in use/i.test(output);
}
