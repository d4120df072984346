'use strict';
/**
 * The install step of our optional native addons (control-plane/native,
 * sidecar/native): builds one with node-gyp against the headers of the
 * running node, whose binary exports the OpenSSL the addons link to. Never
 * fails the install: without the addon the package's JavaScript fallback
 * runs (`fallback` says which), with identical verdicts, only slower. CI
 * sets TRELLIS_REQUIRE_NATIVE_* so that a silent failure fails the tests.
 */
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join, resolve } = require('node:path');

function nodeGypCommand() {
  if (process.env.npm_config_node_gyp) return [process.execPath, process.env.npm_config_node_gyp];
  const bundled = join(resolve(process.execPath, '..', '..'), 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, bundled];
  return null;
}

/** Builds the addon in `dir`; warns (naming `name` and `fallback`) instead of failing. */
function buildNativeAddon({ dir, name, fallback }) {
  const cmd = nodeGypCommand();
  if (!cmd) {
    console.warn(`${name}: node-gyp not found; ${fallback}`);
    return;
  }
  const args = [...cmd.slice(1), 'rebuild'];
  // No network here: build against the headers shipped with the node that runs this install (the
  // project's pinned runtime, node_modules/node-linux-*, carries include/node), so the addon links the
  // OpenSSL that node exports. A machine-wide npm `nodedir` may belong to an older system node: it is
  // used only when the running node has no headers beside it.
  const localHeaders = resolve(process.execPath, '..', '..');
  // node-gyp lets npm_config_nodedir win over --nodedir, so both are set.
  const env = { ...process.env };
  if (existsSync(join(localHeaders, 'include', 'node', 'node_api.h'))) {
    args.push(`--nodedir=${localHeaders}`);
    env.npm_config_nodedir = localHeaders;
  }
  // Bounded: node-gyp may try to download headers, and an install must not hang on a network that is not there.
  const r = spawnSync(cmd[0], args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
    console.warn(`${name}: native build failed (${r.error ? r.error.message : `exit ${r.status}`}); ${fallback}\n${tail}`);
  }
}

module.exports = { buildNativeAddon };
