#!/usr/bin/env node
'use strict';
/**
 * Builds and runs the libFuzzer targets of our native addons (each addon's
 * fuzz/ harness linked with its sources minus the N-API glue, with
 * -fsanitize=fuzzer,address,undefined) for a bounded time each.
 *
 *   node scripts/native-fuzz.js                  300 s per target (npm run fuzz)
 *   node scripts/native-fuzz.js --seconds 20     CI's bounded run
 *   node scripts/native-fuzz.js --corpus DIR     keep each target's corpus in DIR/<target>
 *
 * TRELLIS_FUZZ_SECONDS sets the default. Seeds are written by each harness
 * at start-up (TRELLIS_FUZZ_SEEDS_DIR): no key or input is committed. A
 * crash, a sanitizer report, a leak or a broken invariant fails the run
 * and leaves the input in <target build dir>/crash-*, to replay with
 * `<binary> <that file>`. The targets link the system's OpenSSL (libssl3);
 * a missing toolchain is a one-line skip, or a failure under
 * TRELLIS_REQUIRE_SANITIZERS=1 (CI).
 */
const { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, basename } = require('node:path');
const { ROOT, ADDONS, SANITIZE_FLAGS, bindingTarget, nodeIncludeDir, toolchainOrSkip, step } = require('./native-toolchain');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** Headers and libraries of the OpenSSL the targets link: the system's, with node's headers when libssl-dev is absent. */
function openssl() {
  if (existsSync('/usr/include/openssl/ssl.h')) return { include: [], libs: ['-lssl', '-lcrypto'] };
  const node = nodeIncludeDir();
  if (!node) return null;
  return { include: [`-I${node}`], libs: ['-l:libssl.so.3', '-l:libcrypto.so.3'] };
}

/** Builds one target; returns its binary path, or null. */
function buildTarget(tc, ssl, addon, target) {
  const gyp = bindingTarget(addon.dir);
  const dir = join(ROOT, addon.dir);
  const out = join(dir, 'build', 'Fuzz');
  mkdirSync(out, { recursive: true });
  const sources = [...gyp.sources.filter((s) => !addon.napi.includes(s)), target.harness].map((s) => join(dir, s));
  const cxx = sources.some((s) => /\.(cc|cpp)$/.test(s));
  const bin = join(out, target.name);
  const flags = ['-fsanitize=fuzzer,address,undefined', ...SANITIZE_FLAGS.filter((f) => !f.startsWith('-fsanitize=')), ...ssl.include, ...(gyp.defines ?? []).map((d) => `-D${d}`)];
  // C sources go through clang, C++ ones through clang++, then one link.
  const objects = [];
  for (const src of sources) {
    const isCxx = /\.(cc|cpp)$/.test(src);
    const obj = join(out, `${target.name}-${basename(src)}.o`);
    const lang = isCxx ? ['-std=c++17', '-fno-exceptions', '-fno-rtti'] : [];
    if (!step(isCxx ? tc.cxx : tc.cc, ['-c', ...lang, ...flags, src, '-o', obj])) return null;
    objects.push(obj);
  }
  if (!step(cxx ? tc.cxx : tc.cc, ['-fsanitize=fuzzer,address,undefined', ...objects, ...ssl.libs, '-pthread', '-o', bin])) return null;
  return bin;
}

function main() {
  const tc = toolchainOrSkip('native fuzzing');
  if (!tc) return 0;
  const ssl = openssl();
  if (!ssl) {
    console.error('native fuzzing: no OpenSSL headers (install libssl-dev, or run npm ci for node\'s headers)');
    return 1;
  }
  const seconds = Number(option('--seconds', process.env.TRELLIS_FUZZ_SECONDS ?? '300'));
  if (!Number.isInteger(seconds) || seconds < 1) {
    console.error(`native fuzzing: --seconds must be a whole number of seconds, got "${option('--seconds', process.env.TRELLIS_FUZZ_SECONDS)}"`);
    return 1;
  }
  const keep = option('--corpus', undefined);
  let failed = false;
  for (const addon of ADDONS) {
    for (const target of addon.fuzz) {
      const bin = buildTarget(tc, ssl, addon, target);
      if (!bin) return 1;
      const corpus = keep ? join(keep, target.name) : mkdtempSync(join(tmpdir(), `trellis-fuzz-${target.name}-`));
      mkdirSync(corpus, { recursive: true });
      const artifacts = `${join(ROOT, addon.dir, 'build', 'Fuzz')}/`;
      console.log(`native fuzzing: ${target.name} for ${seconds} s (${addon.package})`);
      const ok = step(bin, [`-max_total_time=${seconds}`, '-max_len=4096', '-timeout=60', '-rss_limit_mb=4096', '-print_final_stats=1', `-artifact_prefix=${artifacts}`, corpus], {
        env: { ...process.env, TRELLIS_FUZZ_SEEDS_DIR: corpus, ASAN_OPTIONS: ['detect_leaks=1', process.env.ASAN_OPTIONS].filter(Boolean).join(':') },
      });
      if (!ok) {
        const crashes = readdirSync(artifacts).filter((f) => /^(crash|leak|timeout|oom)-/.test(f));
        console.error(`native fuzzing: ${target.name} FAILED; inputs kept: ${crashes.map((f) => artifacts + f).join(', ') || 'none'}`);
        failed = true;
      }
      if (!keep) rmSync(corpus, { recursive: true, force: true });
    }
  }
  return failed ? 1 : 0;
}

if (require.main === module) process.exitCode = main();
