/**
 * A sidecar started with a join token and nothing about its identity: the
 * token names the SPIFFE ID (its `sub`), so `--spiffe-id`, `--trust-domain`,
 * `--namespace` and `--service-account` are not needed. And a real mismatch
 * (flags that contradict the control plane or the token) is one error-level
 * line that says how to fix it, then retries on a capped backoff, not a
 * warning per attempt forever.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { NO_CREDENTIAL_EXIT_CODE } from '@trellis/shared';
import { join } from 'node:path';
import { httpGet, makeTmpDir, ProcessGroup, trellisSync, waitFor } from '@trellis/testkit';

const TD = 'trellis.local';
const FRONTEND = `spiffe://${TD}/ns/shop/sa/frontend`;

interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

function lines(text: string): LogLine[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

describe('trellis sidecar identity from a join token (real control plane and sidecar)', function () {
  this.timeout(60_000);
  const tmp = makeTmpDir('trellis-jt-identity-');
  const f = (n: string): string => join(tmp.dir, n);
  const group = new ProcessGroup(tmp.dir);
  let cpAddress = '';

  const newToken = (id: string, uses = 5): string => {
    const t = trellisSync(['token', 'create', '--ca-dir', f('ca'), '--spiffe-id', id, '--uses', String(uses), '--service', 'frontend']);
    expect(t.status, t.stderr).to.equal(0);
    const file = f(`token-${Math.random().toString(16).slice(2)}`);
    writeFileSync(file, t.stdout.trim() + '\n', { mode: 0o600 });
    return file;
  };
  const sidecar = (args: string[]): ChildProcess =>
    group.spawn(['sidecar', '--control-plane', cpAddress, '--ca-bundle', f('ca/root.pem'), '--admin', '127.0.0.1:0', '--drain', '0s', ...args]);

  before(async () => {
    const init = trellisSync(['ca', 'init', '--dir', f('ca'), '--trust-domain', TD]);
    expect(init.status, init.stderr).to.equal(0);
    mkdirSync(f('policies'));
    writeFileSync(f('revocations.yaml'), 'serials: []\nspiffeIds: []\n');
    const cp = group.spawn(['control-plane', '--ca-dir', f('ca'), '--policy-dir', f('policies'), '--revocations', f('revocations.yaml'), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0']);
    await waitFor('the control plane', () => group.log(cp).includes('control plane ready'));
    cpAddress = String(lines(group.log(cp)).find((l) => l.msg === 'control plane ready')!['listen']);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') group.dumpLogs(30);
  });

  after(() => {
    group.killAll();
    tmp.cleanup();
  });

  it('Should take its SPIFFE ID, trust domain and namespace from a join token when none is given, and become ready', async () => {
    const p = sidecar(['--token-file', newToken(FRONTEND), '--service', 'frontend']);
    await waitFor('the sidecar ready', () => group.log(p).includes('"msg":"sidecar ready"'), 30_000);
    const ready = lines(group.log(p)).find((l) => l.msg === 'sidecar ready')!;
    expect(ready['spiffeId']).to.equal(FRONTEND);
    const admin = Number(String(ready['admin']).split(':').pop());
    const dump = JSON.parse((await httpGet(admin, '/config_dump')).body) as { identity?: { spiffeId?: string } };
    expect(JSON.stringify(dump)).to.contain(FRONTEND);
    expect(lines(group.log(p)).filter((l) => l.level === 'warn' || l.level === 'error')).to.deep.equal([]);
  });

  it('Should report a trust domain that contradicts the control plane once, at error level with the fix, then back off', async () => {
    const p = sidecar(['--token-file', newToken(FRONTEND), '--service', 'frontend', '--trust-domain', 'cluster.local', '--log-level', 'debug']);
    // Backoff 250 ms doubling: five attempts take about 4 s; wait for them, then count.
    await waitFor('five connection attempts', () => lines(group.log(p)).filter((l) => l.msg === 'discovery stream opened').length >= 5, 30_000);
    const log = lines(group.log(p));
    const errors = log.filter((l) => l.level === 'error');
    expect(errors, JSON.stringify(errors)).to.have.length(1);
    expect(errors[0]!['code']).to.equal('TRELLIS_DISCOVERY_SERVER_IDENTITY');
    expect(String(errors[0]!['msg'])).to.contain(`spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`).and.to.contain('--trust-domain');
    expect(String(errors[0]!['fix'])).to.contain(`--trust-domain ${TD}`);
    expect(log.filter((l) => l.level === 'warn' && String(l['message'] ?? '').includes('expected spiffe://'))).to.deep.equal([]);
    // Each retry waits at least as long as the one before (bounded by the backoff cap).
    const opened = log.filter((l) => l.msg === 'discovery stream opened').map((l) => Date.parse(String(l['time'])));
    const gaps = opened.slice(1).map((t, i) => t - opened[i]!);
    expect(gaps[gaps.length - 1]!, `gaps ${gaps.join(',')}`).to.be.greaterThan(gaps[0]!);
  });

  it('Should report a --spiffe-id that is not the token\'s once, at error level with the fix', async () => {
    const p = sidecar(['--token-file', newToken(FRONTEND), '--service', 'frontend', '--spiffe-id', `spiffe://${TD}/ns/shop/sa/payments`, '--log-level', 'debug']);
    await waitFor('four connection attempts', () => lines(group.log(p)).filter((l) => l.msg === 'discovery stream opened').length >= 4, 30_000);
    const errors = lines(group.log(p)).filter((l) => l.level === 'error');
    expect(errors, JSON.stringify(errors)).to.have.length(1);
    expect(errors[0]!['code']).to.equal('TRELLIS_CP_IDENTITY_MISMATCH');
    expect(String(errors[0]!['msg'])).to.contain(FRONTEND).and.to.contain(`spiffe://${TD}/ns/shop/sa/payments`);
    expect(String(errors[0]!['fix'])).to.contain('--spiffe-id');
    const repeated = lines(group.log(p)).filter((l) => l.level === 'warn' && JSON.stringify(l).includes('is not the authenticated identity'));
    expect(repeated, JSON.stringify(repeated)).to.deep.equal([]);
    const opened = lines(group.log(p)).filter((l) => l.msg === 'discovery stream opened').map((l) => Date.parse(String(l['time'])));
    const gaps = opened.slice(1).map((t, i) => t - opened[i]!);
    expect(gaps[gaps.length - 1]!, `gaps ${gaps.join(',')}`).to.be.greaterThan(gaps[0]!);
  });

  it('Should exit with its own code, saying so at error level, when its join token is spent and it holds no certificate, rather than retry forever', async () => {
    const token = newToken(FRONTEND, 1);
    const first = sidecar(['--token-file', token, '--service', 'frontend']);
    await waitFor('the first sidecar ready', () => group.log(first).includes('"msg":"sidecar ready"'), 30_000);
    first.kill('SIGTERM');
    expect(await exitOf(first)).to.equal(0);
    // A restart with the same single-use token: the SVID it bought died with the process.
    const again = sidecar(['--token-file', token, '--service', 'frontend']);
    const code = await Promise.race([exitOf(again), new Promise<string>((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
    expect(code, group.log(again).slice(-2000)).to.equal(NO_CREDENTIAL_EXIT_CODE);
    const errors = lines(group.log(again)).filter((l) => l.level === 'error');
    expect(errors.map((l) => l['code'])).to.deep.equal(['TRELLIS_SIDECAR_NO_CREDENTIAL']);
    expect(errors[0]!['serverCode']).to.equal('TRELLIS_CP_TOKEN_SPENT');
    expect(String(errors[0]!['fix'])).to.contain('join token');
  });
});

/**
 * Resolves with `p`'s exit code once it has exited and its stderr has ended: 'exit' can come before the
 * last lines it logged (the error checked below) have been read from the pipe.
 */
function exitOf(p: ChildProcess): Promise<number | null> {
  const code = p.exitCode !== null ? Promise.resolve(p.exitCode) : new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  const ended = !p.stderr || p.stderr.readableEnded ? Promise.resolve() : new Promise<void>((r) => p.stderr!.once('end', () => r()));
  return Promise.all([code, ended]).then(([c]) => c);
}
