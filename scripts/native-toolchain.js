'use strict';
/**
 * What the sanitizer and fuzzing runs of our native addons share: the clang
 * toolchain and its runtimes (Debian: clang, libclang-rt-14-dev), the node
 * headers to build against, and each addon's sources (read from its
 * binding.gyp, so the sanitized build compiles exactly what node-gyp does).
 *
 * A missing toolchain is the caller's to report: with
 * TRELLIS_REQUIRE_SANITIZERS=1 (CI) it is a failure, otherwise one line and
 * a skip, since the addons themselves build with any compiler.
 */
const { spawnSync } = require('node:child_process');
const { existsSync, readFileSync } = require('node:fs');
const { homedir } = require('node:os');
const { join, resolve } = require('node:path');

/** The repository root. */
const ROOT = resolve(__dirname, '..');

/**
 * Our native addons: where they live, which of their sources are the N-API
 * glue (left out of fuzz targets), the mocha suites that exercise them, and
 * their fuzz targets (a harness linked with the other sources).
 */
const ADDONS = [
  {
    package: '@trellis/tls-relay',
    dir: 'sidecar/native',
    napi: ['src/relay.cc'],
    tests: ['sidecar/dist/test/tls-relay.test.js', 'sidecar/dist/test/tls-context-rebuild.test.js', 'sidecar/dist/test/robustness.test.js'],
    fuzz: [{ name: 'relay_records', harness: 'fuzz/relay_records.cc' }],
  },
  {
    package: '@trellis/ecdsa-verify',
    dir: 'control-plane/native',
    napi: ['src/ecdsa_verify.c'],
    tests: ['control-plane/dist/test/ca/native-ecdsa.test.js', 'control-plane/dist/test/ca/csr-verifier-parity.test.js'],
    fuzz: [{ name: 'ecdsa_verify', harness: 'fuzz/ecdsa_verify.c' }],
  },
];

/** The first target of `dir`/binding.gyp (JSON: no comments in ours). */
function bindingTarget(dir) {
  const gyp = JSON.parse(readFileSync(join(ROOT, dir, 'binding.gyp'), 'utf8'));
  return gyp.targets[0];
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/**
 * clang, clang++ and the runtimes, or `{ missing }` naming what is not
 * there. `asanRuntime` is the shared ASan runtime (UBSan included) that
 * must be preloaded into node, which is not itself instrumented.
 */
function findToolchain() {
  const cc = process.env.CLANG || 'clang';
  const cxx = process.env.CLANGXX || 'clang++';
  if (run(cc, ['--version']) === null || run(cxx, ['--version']) === null) return { missing: `${cc}/${cxx} not found (Debian: apt-get install clang)` };
  const asanRuntime = run(cc, ['-print-file-name=libclang_rt.asan-x86_64.so']);
  const fuzzerLib = run(cc, ['-print-file-name=libclang_rt.fuzzer-x86_64.a']);
  // -print-file-name echoes the bare name when it finds nothing.
  if (!asanRuntime || !existsSync(asanRuntime) || !fuzzerLib || !existsSync(fuzzerLib)) {
    return { missing: 'the clang sanitizer and libFuzzer runtimes are not installed (Debian: apt-get install libclang-rt-14-dev)' };
  }
  return { cc, cxx, asanRuntime, fuzzerLib };
}

/**
 * The directory holding node_api.h and node's OpenSSL headers for the
 * running node, or null: the headers beside it first (as
 * build-native-addon.js does: a machine-wide npm nodedir may belong to
 * another node), then npm's nodedir, then node-gyp's download cache.
 */
function nodeIncludeDir() {
  const candidates = [
    join(resolve(process.execPath, '..', '..'), 'include', 'node'),
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    join(homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
  ].filter(Boolean);
  return candidates.find((d) => existsSync(join(d, 'node_api.h')) && existsSync(join(d, 'openssl', 'ssl.h'))) ?? null;
}

/**
 * Reports a missing toolchain: throws under TRELLIS_REQUIRE_SANITIZERS=1,
 * else prints one line and returns false (the caller skips).
 */
function toolchainOrSkip(what) {
  const tc = findToolchain();
  if (!tc.missing) return tc;
  const line = `${what}: skipped, ${tc.missing}`;
  if (process.env.TRELLIS_REQUIRE_SANITIZERS === '1') {
    console.error(`${line} (TRELLIS_REQUIRE_SANITIZERS=1)`);
    process.exit(1);
  }
  console.warn(line);
  return null;
}

/** Compiler flags of every sanitized object: ASan + UBSan, UB fatal, frames kept for reports. */
const SANITIZE_FLAGS = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g', '-O1'];

/** Runs a build step, printing the command on failure; returns whether it succeeded. */
function step(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.status !== 0) {
    console.error(`failed (${r.error ? r.error.message : `exit ${r.status}`}): ${cmd} ${args.join(' ')}`);
    return false;
  }
  return true;
}

module.exports = { ROOT, ADDONS, SANITIZE_FLAGS, bindingTarget, findToolchain, nodeIncludeDir, toolchainOrSkip, step };
