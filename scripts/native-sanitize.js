#!/usr/bin/env node
'use strict';
/**
 * Builds our native addons with AddressSanitizer and UndefinedBehaviorSanitizer
 * (clang) into <addon>/build/Sanitize/, then runs the mocha suites that
 * exercise them against those builds. Node itself is not instrumented, so
 * the ASan runtime is preloaded into it (LD_PRELOAD); leak detection is off
 * because node does not free everything at exit. Any ASan or UBSan report
 * fails the run (UB is made fatal at compile time).
 *
 *   node scripts/native-sanitize.js            build, then run the suites
 *   node scripts/native-sanitize.js --build    build only
 *
 * Needs the compiled tests (npm run build). A missing clang or runtime is a
 * one-line skip, or a failure under TRELLIS_REQUIRE_SANITIZERS=1 (CI).
 */
const { mkdirSync } = require('node:fs');
const { join, basename } = require('node:path');
const { ROOT, ADDONS, SANITIZE_FLAGS, bindingTarget, nodeIncludeDir, toolchainOrSkip, step } = require('./native-toolchain');

/** Environment of a process that loads the sanitized addons. */
function sanitizedEnv(asanRuntime) {
  return {
    ...process.env,
    LD_PRELOAD: asanRuntime,
    // alloc_dealloc_mismatch: node's own (uninstrumented) code is not ours to judge.
    ASAN_OPTIONS: ['detect_leaks=0', 'alloc_dealloc_mismatch=0', 'abort_on_error=0', 'halt_on_error=1', process.env.ASAN_OPTIONS].filter(Boolean).join(':'),
    UBSAN_OPTIONS: ['print_stacktrace=1', 'halt_on_error=1', process.env.UBSAN_OPTIONS].filter(Boolean).join(':'),
    TRELLIS_NATIVE_BUILD: 'sanitize',
    TRELLIS_REQUIRE_NATIVE_RELAY: '1',
    TRELLIS_REQUIRE_NATIVE_ECDSA: '1',
  };
}

/** Compiles one addon with the sanitizers; returns whether it built. */
function buildSanitized(tc, include, addon) {
  const target = bindingTarget(addon.dir);
  const dir = join(ROOT, addon.dir);
  const out = join(dir, 'build', 'Sanitize');
  mkdirSync(join(out, 'obj'), { recursive: true });
  const defines = [...(target.defines ?? []), `NODE_GYP_MODULE_NAME=${target.target_name}`, 'BUILDING_NODE_EXTENSION', 'OPENSSL_THREADS'].map((d) => `-D${d}`);
  const objects = [];
  for (const src of target.sources) {
    const cxx = /\.(cc|cpp)$/.test(src);
    // node-gyp's own defaults for C++ (no RTTI, no exceptions) plus the addon's flags, then ours.
    const own = (cxx ? target.cflags_cc : target.cflags) ?? [];
    const flags = [...(cxx ? ['-fno-rtti', '-fno-exceptions'] : []), ...own.filter((f) => !/^-O/.test(f)), ...SANITIZE_FLAGS];
    const obj = join(out, 'obj', `${basename(src)}.o`);
    if (!step(cxx ? tc.cxx : tc.cc, ['-c', '-fPIC', '-pthread', `-I${include}`, ...defines, ...flags, join(dir, src), '-o', obj])) return false;
    objects.push(obj);
  }
  // The ASan runtime is not linked in: node loads it first (LD_PRELOAD) and the addon's references resolve to it.
  return step(tc.cxx, ['-shared', '-pthread', '-fsanitize=address,undefined', ...objects, '-o', join(out, `${target.target_name}.node`)]);
}

function main() {
  const tc = toolchainOrSkip('native sanitizers');
  if (!tc) return 0;
  const include = nodeIncludeDir();
  if (!include) {
    console.error('native sanitizers: no node headers (node_api.h, openssl/) for this node: run npm ci first, which installs them for node-gyp');
    return 1;
  }
  for (const addon of ADDONS) {
    if (!buildSanitized(tc, include, addon)) return 1;
    console.log(`native sanitizers: built ${addon.package} with -fsanitize=address,undefined`);
  }
  if (process.argv.includes('--build')) return 0;
  const files = ADDONS.flatMap((a) => a.tests);
  const mocha = join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const ok = step(process.execPath, [mocha, '--no-config', '--exit', '--timeout', '60000', ...files], { cwd: ROOT, env: sanitizedEnv(tc.asanRuntime) });
  console.log(ok ? 'native sanitizers: the native suites passed with ASan and UBSan' : 'native sanitizers: FAILED (see the ASan/UBSan report or the failing test above)');
  return ok ? 0 : 1;
}

if (require.main === module) process.exitCode = main();

module.exports = { sanitizedEnv };
