import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describeWith, NETNS, TRELLIS_BIN } from '@trellis/testkit';

/**
 * `trellis redirect apply` for real: iptables rules installed inside a network
 * namespace standing in for a pod, with a peer namespace standing in for
 * another pod. Needs root, `ip netns` and iptables; otherwise skipped with the
 * reason printed.
 */
const suffix = `${process.pid % 100000}`;
const POD = `trl-pod-${suffix}`;
const PEER = `trl-peer-${suffix}`;
const POD_IP = '10.251.7.1';
const PEER_IP = '10.251.7.2';
const POD_IP6 = 'fd00:251:7::1';
const PEER_IP6 = 'fd00:251:7::2';

function sh(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', input, timeout: 20_000 });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? r.error.message : '') };
}

/** Dials host:port from inside `ns` (optionally as `uid`) and returns what the server says first. */
function dial(ns: string, host: string, port: number, uid?: number): string {
  const script = `${uid !== undefined ? `process.setgid(${uid}); process.setuid(${uid});` : ''}
const s = require('net').connect(${port}, '${host}');
let out = '';
s.on('data', (d) => (out += d));
s.on('end', () => { process.stdout.write(out); });
s.on('error', (e) => { process.stdout.write('ERR ' + e.code); });
setTimeout(() => { process.stdout.write(out || 'TIMEOUT'); process.exit(0); }, 5000).unref();`;
  return sh(['ip', 'netns', 'exec', ns, process.execPath, '-e', script]).stdout;
}

describeWith(NETNS, 'trellis redirect apply inside a network namespace (real iptables)', function () {
  this.timeout(60_000);
  let apps: ChildProcess | undefined;

  before(async function () {
    for (const cmd of [
      ['ip', 'netns', 'add', POD],
      ['ip', 'netns', 'add', PEER],
      ['ip', 'link', 'add', `trlp${suffix}`, 'type', 'veth', 'peer', 'name', `trlq${suffix}`],
      ['ip', 'link', 'set', `trlp${suffix}`, 'netns', POD],
      ['ip', 'link', 'set', `trlq${suffix}`, 'netns', PEER],
      ['ip', '-n', POD, 'addr', 'add', `${POD_IP}/24`, 'dev', `trlp${suffix}`],
      ['ip', '-n', PEER, 'addr', 'add', `${PEER_IP}/24`, 'dev', `trlq${suffix}`],
      ['ip', '-n', POD, 'addr', 'add', `${POD_IP6}/64`, 'dev', `trlp${suffix}`, 'nodad'],
      ['ip', '-n', PEER, 'addr', 'add', `${PEER_IP6}/64`, 'dev', `trlq${suffix}`, 'nodad'],
      ['ip', '-n', POD, 'link', 'set', `trlp${suffix}`, 'up'],
      ['ip', '-n', PEER, 'link', 'set', `trlq${suffix}`, 'up'],
      ['ip', '-n', POD, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', PEER, 'link', 'set', 'lo', 'up'],
    ]) {
      const r = sh(cmd);
      expect(r.status, `${cmd.join(' ')}: ${r.stderr}`).to.equal(0);
    }
    // The "pod": an app on 8080, an unredirected port 9090, and a stand-in sidecar listener on 15100, each saying who it is.
    const server = `const net = require('net');
for (const [port, who] of [[8080, 'app'], [9090, 'metrics'], [15100, 'sidecar']]) net.createServer((s) => s.end(who)).listen({ port, host: '::', ipv6Only: false });
setTimeout(() => process.stdout.write('ready\\n'), 100);`;
    apps = spawn('ip', ['netns', 'exec', POD, process.execPath, '-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => apps!.stdout!.once('data', () => resolve()));
  });

  after(() => {
    apps?.kill('SIGKILL');
    sh(['ip', 'netns', 'del', POD]);
    sh(['ip', 'netns', 'del', PEER]);
  });

  it('reaches the app directly, over IPv4 and IPv6, before any rule is installed', () => {
    expect(dial(PEER, POD_IP, 8080)).to.equal('app');
    expect(dial(PEER, POD_IP6, 8080)).to.equal('app');
  });

  it('sends a peer that dials the app port to the sidecar once the rules are in', () => {
    const r = sh(['ip', 'netns', 'exec', POD, process.execPath, TRELLIS_BIN, 'redirect', 'apply', '--inbound', '8080=15100', '--proxy-uid', '1337']);
    expect(r.status, r.stderr).to.equal(0);
    expect(dial(PEER, POD_IP, 8080)).to.equal('sidecar');
  });

  it('closes the IPv6 path too, so a dual-stack pod cannot be reached around the sidecar', () => {
    expect(dial(PEER, POD_IP6, 8080)).to.equal('sidecar');
  });

  it('still lets the sidecar reach the app over loopback', () => {
    expect(dial(POD, '127.0.0.1', 8080)).to.equal('app');
    expect(dial(POD, '::1', 8080)).to.equal('app');
  });

  it('redirects in-pod dials to the pod IP, except from the sidecar UID', () => {
    expect(dial(POD, POD_IP, 8080)).to.equal('sidecar');
    expect(dial(POD, POD_IP, 8080, 1337)).to.equal('app');
  });

  it('replaces its rules on a second run instead of adding duplicates', () => {
    const r = sh(['ip', 'netns', 'exec', POD, process.execPath, TRELLIS_BIN, 'redirect', 'apply', '--inbound', '8080=15100', '--proxy-uid', '1337']);
    expect(r.status, r.stderr).to.equal(0);
    const rules = sh(['ip', 'netns', 'exec', POD, 'iptables', '-t', 'nat', '-S']).stdout.split('\n');
    expect(rules.filter((l) => l === '-A PREROUTING -p tcp -j TRELLIS_INBOUND')).to.have.length(1);
    expect(rules.filter((l) => l.startsWith('-A TRELLIS_INBOUND'))).to.have.length(1);
    expect(dial(PEER, POD_IP, 8080)).to.equal('sidecar');
  });

  it('leaves ports it was not told about alone', () => {
    expect(dial(PEER, POD_IP, 9090)).to.equal('metrics');
  });
});
