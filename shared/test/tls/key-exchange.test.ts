import { expect } from 'chai';
import * as fc from 'fast-check';
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from 'node:tls';
import { LEGACY_NODE, legacyNodePath, OPENSSL, skipUnless, TestCa } from '@trellis/testkit';
import { readClientHello, type ClientHelloFacts } from '../../src/tls/client-hello';
import { groupName, groupsList, isHybridGroup, selectGroup, type KeyExchangePolicy } from '../../src/tls/key-exchange';

const MLKEM = 0x11ec;
const X25519 = 0x001d;
const P256 = 0x0017;
const P384 = 0x0018;

function hello(o: Partial<ClientHelloFacts>): ClientHelloFacts {
  return { tls13: true, supportedGroups: [], keyShareGroups: [], recordBytes: 0, helloBytes: 0, ...o };
}

describe('Key-exchange policy', function () {
  it('Should give each policy its OpenSSL groups list, the hybrid first under prefer', function () {
    expect(groupsList('prefer')).to.equal('X25519MLKEM768/X25519:P-256');
    expect(groupsList('require')).to.equal('X25519MLKEM768');
    expect(groupsList('off')).to.equal('X25519:P-256');
  });

  it('Should name groups the same whatever OpenSSL or Node called them', function () {
    const table: Array<[string | undefined, string]> = [
      ['X25519MLKEM768', 'X25519MLKEM768'],
      ['x25519', 'X25519'],
      ['X25519', 'X25519'],
      ['prime256v1', 'P-256'],
      ['secp256r1', 'P-256'],
      ['secp384r1', 'P-384'],
      [undefined, 'unknown'],
      ['', 'unknown'],
    ];
    for (const [input, want] of table) expect(groupName(input), String(input)).to.equal(want);
    expect(isHybridGroup('X25519MLKEM768')).to.equal(true);
    expect(isHybridGroup('X25519')).to.equal(false);
  });

  describe('choosing the group a server negotiates', function () {
    const table: Array<[string, KeyExchangePolicy, ClientHelloFacts, string]> = [
      ['a Node 24 client offering the hybrid with its share', 'prefer', hello({ supportedGroups: [MLKEM, X25519, P256], keyShareGroups: [MLKEM] }), 'X25519MLKEM768'],
      ['a client that supports the hybrid but sent only an X25519 share (HelloRetryRequest)', 'prefer', hello({ supportedGroups: [X25519, MLKEM], keyShareGroups: [X25519] }), 'X25519MLKEM768 retry'],
      ['an OpenSSL 3.0 client', 'prefer', hello({ supportedGroups: [X25519, P256, 0x1e, 0x19, P384], keyShareGroups: [X25519] }), 'X25519'],
      ['a P-256-only client', 'prefer', hello({ supportedGroups: [P256], keyShareGroups: [P256] }), 'P-256'],
      ['shares for both classical groups, the server ordering them', 'prefer', hello({ supportedGroups: [P256, X25519], keyShareGroups: [P256, X25519] }), 'X25519'],
      ['a P-384-only client', 'prefer', hello({ supportedGroups: [P384], keyShareGroups: [P384] }), 'no_shared_group'],
      ['a TLS 1.2 client', 'prefer', hello({ tls13: false, supportedGroups: [P256, X25519] }), 'X25519'],
      ['a TLS 1.2 client without supported_groups', 'prefer', hello({ tls13: false }), 'P-256'],
      ['a classical client under require', 'require', hello({ supportedGroups: [X25519, P256], keyShareGroups: [X25519] }), 'not_hybrid'],
      ['a TLS 1.2 client under require', 'require', hello({ tls13: false, supportedGroups: [MLKEM, X25519] }), 'not_hybrid'],
      ['a hybrid-capable client without its share under require', 'require', hello({ supportedGroups: [X25519, MLKEM], keyShareGroups: [X25519] }), 'X25519MLKEM768 retry'],
      ['a Node 24 client under off', 'off', hello({ supportedGroups: [MLKEM, X25519, P256], keyShareGroups: [MLKEM, X25519] }), 'X25519'],
    ];
    for (const [what, policy, h, want] of table) {
      it(`Should pick ${want} for ${what} (${policy})`, function () {
        const s = selectGroup(h, policy);
        expect(s.ok ? `${s.group}${s.helloRetry ? ' retry' : ''}` : s.reason).to.equal(want);
      });
    }
  });
});

describe('Reading a ClientHello', function () {
  /** A minimal well-formed TLS 1.3 ClientHello with the given groups and shares, in one record. */
  function clientHello(groups: number[], shares: number[]): Buffer {
    const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
    const ext = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), u16(body.length), body]);
    const groupList = Buffer.concat(groups.map(u16));
    const shareList = Buffer.concat(shares.map((g) => Buffer.concat([u16(g), u16(2), Buffer.from([1, 2])])));
    const exts = Buffer.concat([
      ext(10, Buffer.concat([u16(groupList.length), groupList])),
      ext(43, Buffer.from([2, 0x03, 0x04])),
      ext(51, Buffer.concat([u16(shareList.length), shareList])),
    ]);
    const body = Buffer.concat([u16(0x0303), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), u16(0x1301), Buffer.from([1, 0]), u16(exts.length), exts]);
    const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
    return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
  }

  it('Should read the groups and key shares of a ClientHello', function () {
    const r = readClientHello(clientHello([MLKEM, X25519], [MLKEM]));
    expect(r.status).to.equal('ok');
    if (r.status !== 'ok') return;
    expect([r.hello.tls13, r.hello.supportedGroups, r.hello.keyShareGroups]).to.deep.equal([true, [MLKEM, X25519], [MLKEM]]);
  });

  it('Should say incomplete for every prefix, and read a ClientHello split over several records', function () {
    const whole = clientHello([X25519, P256], [X25519]);
    for (let n = 0; n < whole.length; n++) expect(readClientHello(whole.subarray(0, n)).status, `${n} bytes`).to.equal('incomplete');
    // The same handshake message in three records of the same content type.
    const hs = whole.subarray(5);
    const rec = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 3, 3, b.length >> 8, b.length & 0xff]), b]);
    const split = Buffer.concat([rec(hs.subarray(0, 3)), rec(hs.subarray(3, 40)), rec(hs.subarray(40))]);
    const r = readClientHello(split);
    expect(r.status).to.equal('ok');
    if (r.status === 'ok') expect(r.hello.supportedGroups).to.deep.equal([X25519, P256]);
  });

  it('Should refuse what is not a ClientHello, with the reason', function () {
    const table: Array<[string, Buffer, string]> = [
      ['plaintext HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'not a TLS handshake record'],
      ['a ServerHello', Buffer.from([0x16, 3, 3, 0, 4, 2, 0, 0, 0]), 'the first handshake message is not a ClientHello'],
      ['an empty record', Buffer.from([0x16, 3, 1, 0, 0]), 'an empty handshake record'],
      ['a truncated body', Buffer.from([0x16, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0]), 'truncated ClientHello'],
    ];
    for (const [what, bytes, reason] of table) expect(readClientHello(bytes), what).to.deep.equal({ status: 'invalid', reason });
  });

  it('Should never throw, whatever the bytes', function () {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        const r = readClientHello(b);
        return r.status === 'ok' || r.status === 'incomplete' || r.status === 'invalid';
      }),
      { numRuns: 3000 },
    );
    const real = clientHello([MLKEM, X25519, P256], [MLKEM, X25519]);
    fc.assert(
      fc.property(fc.nat(real.length - 1), fc.integer({ min: 0, max: 255 }), (at, v) => {
        const b = Buffer.from(real);
        b[at] = v;
        readClientHello(b);
        return true;
      }),
      { numRuns: 3000 },
    );
  });
});

/**
 * The oracle: real clients against a real Node 24 server with each policy.
 * The server reads the ClientHello the way the sidecar's Node path does
 * (first bytes, then put back), and the group {@link selectGroup} names must
 * be the one the client itself reports.
 */
describe('Choosing the group agrees with real clients (node:tls server, real TLS)', function () {
  this.timeout(60_000);
  let ca: TestCa;
  let leaf: { pem: string; keyPem: string };
  const servers: Server[] = [];
  before(async () => {
    ca = await TestCa.create('example.org');
    const l = await ca.issueLeaf('spiffe://example.org/ns/a/sa/server');
    leaf = { pem: l.chainPem, keyPem: l.key.keyPem };
  });

  /** A server with `policy`; resolves its port. Each accepted connection's ClientHello is pushed to `hellos`. */
  async function server(policy: KeyExchangePolicy, hellos: Buffer[]): Promise<number> {
    const s = createServer((socket: Socket) => {
      socket.on('error', () => socket.destroy());
      let seen = Buffer.alloc(0);
      const onData = (chunk: Buffer): void => {
        seen = Buffer.concat([seen, chunk]);
        if (readClientHello(seen).status === 'incomplete') return;
        socket.off('data', onData);
        socket.pause();
        hellos.push(seen);
        socket.unshift(seen);
        const tls = new TLSSocket(socket, { isServer: true, key: leaf.keyPem, cert: leaf.pem, ecdhCurve: groupsList(policy) });
        tls.on('error', () => tls.destroy());
        tls.on('secure', () => tls.end('ok'));
      };
      socket.on('data', onData);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return (s.address() as { port: number }).port;
  }
  after(() => servers.forEach((s) => s.close()));

  /** A node:tls client in this process; resolves the group it reports, or 'refused'. */
  function nodeClient(port: number, opts: Partial<ConnectionOptions>): Promise<string> {
    return new Promise((resolve) => {
      const c = tlsConnect({ host: '127.0.0.1', port, ca: ca.root.pem, checkServerIdentity: () => undefined, ...opts }, () => {
        resolve(groupName((c.getEphemeralKeyInfo() as { name?: string } | null)?.name));
        c.destroy();
      });
      c.on('error', () => resolve('refused'));
    });
  }

  /** A child process client (OpenSSL 3.0's s_client, a Node 20); resolves its stdout. */
  function run(cmd: string, args: string[], input = ''): Promise<string> {
    return new Promise((resolve) => {
      const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('close', () => resolve(out));
      p.stdin.end(input);
      setTimeout(() => p.kill(), 10_000).unref();
    });
  }

  function inferred(h: Buffer, policy: KeyExchangePolicy): string {
    const r = readClientHello(h);
    if (r.status !== 'ok') return r.status;
    const s = selectGroup(r.hello, policy);
    return s.ok ? s.group : 'refused';
  }

  for (const policy of ['prefer', 'require', 'off'] as const) {
    it(`Should name the group node:tls clients negotiate under ${policy}`, async function () {
      const hellos: Buffer[] = [];
      const port = await server(policy, hellos);
      const clients: Array<[string, Partial<ConnectionOptions>]> = [
        ['Node 24 defaults', {}],
        ['the prefer list', { ecdhCurve: groupsList('prefer') }],
        ['the off list', { ecdhCurve: groupsList('off') }],
        ['X25519 first, hybrid second', { ecdhCurve: 'X25519:X25519MLKEM768' }],
        ['P-256 only', { ecdhCurve: 'P-256' }],
        ['TLS 1.2', { maxVersion: 'TLSv1.2' }],
      ];
      for (const [what, opts] of clients) {
        const before = hellos.length;
        const truth = await nodeClient(port, opts);
        expect(hellos.length, `${what}: the server saw a ClientHello`).to.equal(before + 1);
        expect(inferred(hellos[before]!, policy), `${what} under ${policy}`).to.equal(truth);
      }
    });
  }

  it('Should name the group OpenSSL 3.0 s_client negotiates, and refuse it under require', async function () {
    skipUnless(this, OPENSSL);
    for (const policy of ['prefer', 'require'] as const) {
      const hellos: Buffer[] = [];
      const port = await server(policy, hellos);
      const out = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'x'], 'Q\n');
      const temp = /Server Temp Key: (?:ECDH, )?([A-Za-z0-9-]+)/.exec(out)?.[1];
      const truth = temp ? groupName(temp) : 'refused';
      expect(hellos, 'the server saw a ClientHello').to.have.length(1);
      expect(inferred(hellos[0]!, policy), `s_client under ${policy}: ${out.slice(0, 300)}`).to.equal(truth);
      expect(truth).to.equal(policy === 'prefer' ? 'X25519' : 'refused');
    }
  });

  it('Should name the group a Node 20 client negotiates, and refuse it under require', async function () {
    skipUnless(this, LEGACY_NODE);
    const script = `const t=require('tls');const c=t.connect({host:'127.0.0.1',port:+process.argv[1],rejectUnauthorized:false},()=>{console.log('group',c.getEphemeralKeyInfo().name);c.destroy()});c.on('error',e=>console.log('error',e.code))`;
    for (const policy of ['prefer', 'require'] as const) {
      const hellos: Buffer[] = [];
      const port = await server(policy, hellos);
      const out = await run(legacyNodePath()!, ['-e', script, String(port)]);
      const truth = /^group (\S+)/m.exec(out)?.[1] !== undefined ? groupName(/^group (\S+)/m.exec(out)![1]) : 'refused';
      expect(inferred(hellos[0]!, policy), `Node 20 under ${policy}: ${out}`).to.equal(truth);
      expect(truth).to.equal(policy === 'prefer' ? 'X25519' : 'refused');
    }
  });

  it('Should read a hybrid ClientHello whole, though its MLKEM768 share alone is 1,216 bytes (more than one TCP segment off loopback)', async function () {
    const hellos: Buffer[] = [];
    const port = await server('prefer', hellos);
    await nodeClient(port, { ecdhCurve: groupsList('prefer') });
    const r = readClientHello(hellos[0]!);
    expect(r.status).to.equal('ok');
    if (r.status === 'ok') expect(r.hello.helloBytes).to.be.greaterThan(1200);
  });
});
