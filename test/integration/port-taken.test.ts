/**
 * A control plane or sidecar whose port is taken: the start fails with the
 * flag and address named, and the process exits instead of staying up half
 * started (before, it printed the error and kept running, deaf to SIGTERM,
 * so a supervisor waited on a process that served nothing).
 */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { freePort, makeTmpDir, trellisSpawn } from '@trellis/testkit';
import { initCa } from './control-plane-harness';

describe('trellis control-plane and trellis sidecar with a port already taken (real processes)', function () {
  this.timeout(30_000);
  let tmp: { dir: string; cleanup: () => void };
  let holder: Server;
  let taken: number;

  before(async () => {
    tmp = makeTmpDir('trellis-cp-listen-');
    initCa(join(tmp.dir, 'ca'));
    mkdirSync(join(tmp.dir, 'policies'));
    writeFileSync(join(tmp.dir, 'token'), 'not-a-token\n', { mode: 0o600 });
    holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    taken = (holder.address() as { port: number }).port;
  });
  after(async () => {
    await new Promise<void>((r) => holder.close(() => r()));
    tmp.cleanup();
  });

  /** Runs `args`; resolves with its exit code and stderr, or 'still running' (killed) after 20 s. */
  async function run(args: string[]): Promise<{ code: number | null | 'still running'; stderr: string }> {
    const child = trellisSpawn(args);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      new Promise<number | null>((r) => child.on('close', (c) => r(c))),
      new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), 20_000))),
    ]);
    clearTimeout(timer);
    if (code === 'still running') child.kill('SIGKILL');
    return { code, stderr };
  }

  for (const [flag, what] of [['admin', 'the admin API'], ['listen', 'the discovery port']] as const) {
    it(`Should exit 1 naming the control plane's --${flag} and the address when ${what} cannot be bound, not stay up`, async () => {
      const other = flag === 'admin' ? 'listen' : 'admin';
      const { code, stderr } = await run(['control-plane', '--ca-dir', join(tmp.dir, 'ca'), '--policy-dir', join(tmp.dir, 'policies'), `--${flag}`, `127.0.0.1:${taken}`, `--${other}`, '127.0.0.1:0']);
      expect(code, stderr.split('\n').slice(-5).join('\n')).to.equal(1);
      expect(stderr).to.contain(`cannot listen on 127.0.0.1:${taken} (--${flag}, ${what}): EADDRINUSE [TRELLIS_CP_LISTEN_FAILED]`);
      expect(stderr, 'nothing ran on after the failed start').to.not.contain('exiting with handles still open');
    });
  }

  it('Should exit 1 naming the sidecar\'s --admin and the address when its admin port cannot be bound, its listeners closed', async () => {
    const { code, stderr } = await run(['sidecar', '--service', 'web', '--control-plane', `127.0.0.1:${await freePort()}`, '--ca-bundle', join(tmp.dir, 'ca', 'root.pem'), '--token-file', join(tmp.dir, 'token'),
      '--trust-domain', 'example.org', '--namespace', 'shop', '--service-account', 'web', '--admin', `127.0.0.1:${taken}`, '--inbound', '127.0.0.1:0=8080/http']);
    expect(code, stderr.split('\n').slice(-5).join('\n')).to.equal(1);
    expect(stderr).to.contain(`cannot listen on the admin port 127.0.0.1:${taken} (--admin): EADDRINUSE [TRELLIS_SIDECAR_LISTEN_FAILED]`);
    expect(stderr, 'nothing ran on after the failed start').to.not.contain('exiting with handles still open');
  });
});
