/**
 * `trellis sidecar` runs with a bounded V8 young generation
 * (cli/bin/young-generation.js): without it, Node 24 grows new space to
 * 128 MB under load, and a sidecar under HTTP/2 load sat at about 230 MB RSS.
 * The bound can only be set at start-up, so the command re-executes itself
 * in place. These tests check the real process: same PID, the flag on its
 * command line, signals still stop it, and an operator's own size wins.
 */
import { expect } from 'chai';
import { type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, REPO_ROOT, TestCa, trellisSpawn, waitFor } from '@trellis/testkit';

interface YoungGeneration {
  youngGenerationReexec(argv: string[], execArgv: string[], nodeOptions: string | undefined, hasExecve: boolean): string[] | null;
  SIDECAR_SEMI_SPACE_MB: number;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const yg = require(join(REPO_ROOT, 'cli', 'bin', 'young-generation.js')) as YoungGeneration;

describe('The sidecar young generation', function () {
  describe('youngGenerationReexec', function () {
    it('Should re-execute only the sidecar command, keeping node arguments already given', () => {
      expect(yg.youngGenerationReexec(['sidecar', '--service', 'a'], [], undefined, true)).to.deep.equal([`--max-semi-space-size=${yg.SIDECAR_SEMI_SPACE_MB}`]);
      expect(yg.youngGenerationReexec(['sidecar'], ['--enable-source-maps'], '', true)).to.deep.equal(['--enable-source-maps', `--max-semi-space-size=${yg.SIDECAR_SEMI_SPACE_MB}`]);
      for (const cmd of ['control-plane', 'up', 'version', 'ca']) expect(yg.youngGenerationReexec([cmd], [], undefined, true), cmd).to.equal(null);
      expect(yg.youngGenerationReexec([], [], undefined, true)).to.equal(null);
    });

    it('Should leave a size chosen on the command line or in NODE_OPTIONS alone', () => {
      expect(yg.youngGenerationReexec(['sidecar'], ['--max-semi-space-size=32'], undefined, true)).to.equal(null);
      expect(yg.youngGenerationReexec(['sidecar'], ['--max_semi_space_size=32'], undefined, true)).to.equal(null);
      expect(yg.youngGenerationReexec(['sidecar'], [], '--enable-source-maps --max-semi-space-size=2', true)).to.equal(null);
      expect(yg.youngGenerationReexec(['sidecar'], [], '--max-semi-space-size 2', true)).to.equal(null);
      // Another node option is not a size.
      expect(yg.youngGenerationReexec(['sidecar'], [], '--max-old-space-size=256', true)).to.deep.equal([`--max-semi-space-size=${yg.SIDECAR_SEMI_SPACE_MB}`]);
    });

    it('Should go on unchanged on a Node without process.execve', () => {
      expect(yg.youngGenerationReexec(['sidecar'], [], undefined, false)).to.equal(null);
    });
  });

  describe('a real `trellis sidecar` process', function () {
    this.timeout(30_000);
    let dir: string;
    let cleanup: () => void;
    const children: ChildProcess[] = [];

    before(async () => {
      const tmp = makeTmpDir('trellis-young-gen-');
      dir = tmp.dir;
      cleanup = tmp.cleanup;
      const ca = await TestCa.create('cluster.local');
      writeFileSync(join(dir, 'ca.pem'), ca.root.pem);
      writeFileSync(join(dir, 'token'), 'not-a-real-token');
    });
    after(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      cleanup();
    });

    /** Starts a sidecar whose control plane is unreachable (it keeps retrying) and waits until it listens. */
    async function startSidecar(env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
      const child = trellisSpawn(
        ['sidecar', '--control-plane', '127.0.0.1:1', '--ca-bundle', join(dir, 'ca.pem'), '--token-file', join(dir, 'token'), '--service', 'young', '--namespace', 'ns', '--admin', '127.0.0.1:0'],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
      );
      children.push(child);
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
      await waitFor('the sidecar to listen', () => out.includes('"sidecar listening"') || child.exitCode !== null).catch((err: Error) => {
        throw new Error(`${err.message}; output: ${out.slice(-800)}`);
      });
      expect(child.exitCode, out).to.equal(null);
      return { child, exited };
    }

    const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');

    it('Should run under the same PID with --max-semi-space-size on its command line, and stop on SIGTERM', async () => {
      const { child, exited } = await startSidecar();
      const args = cmdline(child.pid!);
      expect(args).to.include(`--max-semi-space-size=${yg.SIDECAR_SEMI_SPACE_MB}`);
      expect(args.slice(args.indexOf('sidecar'))).to.include.members(['--service', 'young']);
      child.kill('SIGTERM');
      expect(await exited).to.equal(0);
    });

    it("Should keep the operator's NODE_OPTIONS size and not re-execute", async () => {
      const { child, exited } = await startSidecar({ NODE_OPTIONS: '--max-semi-space-size=2' });
      const args = cmdline(child.pid!);
      expect(args.some((a) => a.startsWith('--max-semi-space-size'))).to.equal(false);
      expect(readFileSync(`/proc/${child.pid!}/environ`, 'utf8').split('\0')).to.include('NODE_OPTIONS=--max-semi-space-size=2');
      child.kill('SIGTERM');
      expect(await exited).to.equal(0);
    });
  });
});
