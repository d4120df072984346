import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { UsageError, TrellisError } from '@trellis/shared';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { trellisSync } from '@trellis/testkit';
import { runCli } from '../src/main';
import type { Command } from '../src/command';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

const fake: Command[] = [
  { name: 'ca init', summary: 'init', usage: 'trellis ca init --dir DIR', options: { dir: { type: 'string' } }, async run(ctx) { if (!ctx.values.dir) throw new UsageError('--dir is required'); ctx.stdout.write(`dir=${String(ctx.values.dir)}\n`); } },
  { name: 'ca fail', summary: 'fails', usage: 'trellis ca fail', options: {}, async run() { throw new TrellisError('TRELLIS_TEST_BOOM', 'it broke'); } },
];

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = capture();
  const err = capture();
  const code = await runCli({ argv, stdout: out.stream, stderr: err.stream, commands: fake });
  return { code, out: out.text(), err: err.text() };
}

describe('trellis dispatcher', () => {
  it('Should run the command named by the longest matching words', async () => {
    const r = await run(['ca', 'init', '--dir', '/x']);
    expect(r.code).to.equal(0);
    expect(r.out).to.equal('dir=/x\n');
  });

  it('Should exit 2 with the usage line on an unknown flag', async () => {
    const r = await run(['ca', 'init', '--bogus']);
    expect(r.code).to.equal(2);
    expect(r.err).to.contain('usage: trellis ca init --dir DIR');
  });

  it('Should exit 2 when a command reports a usage error', async () => {
    const r = await run(['ca', 'init']);
    expect(r.code).to.equal(2);
    expect(r.err).to.contain('--dir is required');
  });

  it('Should print one line with the error code and exit 1 on a failure', async () => {
    const r = await run(['ca', 'fail']);
    expect(r.code).to.equal(1);
    expect(r.err.trim().split('\n')).to.have.length(1);
    expect(r.err).to.contain('[TRELLIS_TEST_BOOM]');
  });

  it('Should print the stack trace only with --debug', async () => {
    const r = await run(['ca', 'fail', '--debug']);
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/\n\s+at /);
  });

  it('Should list the subcommands of a group', async () => {
    const r = await run(['ca', '--help']);
    expect(r.code).to.equal(0);
    expect(r.out).to.contain('trellis ca init').and.to.contain('trellis ca fail');
  });

  it('Should exit 2 on an unknown command', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).to.equal(2);
    expect(r.err).to.contain('unknown command');
  });

  it('Should exit 2 on an unknown command with --help, naming it and suggesting the closest command', async () => {
    const r = await run(['ca', 'iint', '--help']);
    expect(r.code).to.equal(2);
    expect(r.out).to.equal('');
    expect(r.err).to.equal('trellis: unknown command "ca iint". Did you mean "trellis ca init"? Run "trellis --help" for the list.\n');
  });

  it('Should exit 2 on an unknown first word with --help, without printing the general help', async () => {
    const r = await run(['cs', 'init', '--help']);
    expect(r.code).to.equal(2);
    expect(r.out).to.equal('');
    expect(r.err).to.contain('unknown command "cs"').and.to.contain('Did you mean "trellis ca init"?');
  });

  it('Should not suggest a command that is nothing like the unknown one', async () => {
    const r = await run(['zzzzzzzzzz']);
    expect(r.code).to.equal(2);
    expect(r.err).to.equal('trellis: unknown command "zzzzzzzzzz". Run "trellis --help" for the list.\n');
  });

  it('Should still list a group\'s subcommands for the group name alone, and exit 0 with --help', async () => {
    const r = await run(['ca']);
    expect(r.code).to.equal(2);
    expect(r.out).to.contain('trellis ca init');
    expect((await run(['ca', '--help'])).code).to.equal(0);
  });

  it('Should make the real binary exit 2 for NOSUCHCOMMAND --help and suggest a close command', () => {
    const r = trellisSync(['NOSUCHCOMMAND', '--help']);
    expect(r.status).to.equal(2);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.contain('unknown command "NOSUCHCOMMAND"');
    const typo = trellisSync(['chek', '--help']);
    expect(typo.status).to.equal(2);
    expect(typo.stderr).to.contain('Did you mean "trellis check"?');
  });

  it('Should load only the module of a command named after it, so a sidecar does not carry the control plane', () => {
    const script = `
      const { runCli } = require(${JSON.stringify(join(__dirname, '..', 'src', 'main.js'))});
      const { PassThrough } = require('node:stream');
      runCli({ argv: ['echo-app', '--help'], stdout: new PassThrough(), stderr: new PassThrough() }).then((code) => {
        const loaded = Object.keys(require.cache);
        console.log(JSON.stringify({ code, controlPlane: loaded.some((f) => f.includes('/control-plane/dist/')), grpc: loaded.some((f) => f.includes('@grpc')) }));
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ code: 0, controlPlane: false, grpc: false });
  });

  it('Should run as the real trellis binary and print its help', () => {
    const r = trellisSync(['--help']);
    expect(r.status).to.equal(0);
    expect(r.stdout).to.contain('usage: trellis COMMAND');
  });
});
