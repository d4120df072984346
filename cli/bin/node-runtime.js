'use strict';
/**
 * The Node.js runtime Trellis runs on. Trellis needs Node 24 (LTS; OpenSSL
 * 3.5 for the X25519MLKEM768 hybrid key exchange). `npm ci` installs the
 * pinned official build (the optional dependency node-linux-<arch>), and npm
 * scripts and `npx` put it first on PATH. Started directly by an older
 * system node (`node cli/bin/trellis.js`, a shell alias), the CLI re-runs
 * itself on the pinned runtime, or says what is missing.
 */
const { spawn } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const MIN_MAJOR = 24;

/** The pinned runtime's node binary for this platform, or null. */
function pinnedNode() {
  if (process.platform !== 'linux') return null;
  try {
    const pkg = require.resolve(`node-linux-${process.arch}/package.json`, { paths: [path.join(__dirname, '..', '..')] });
    const bin = path.join(path.dirname(pkg), 'bin', 'node');
    return existsSync(bin) ? bin : null;
  } catch {
    return null;
  }
}

/**
 * True when this process may go on. Otherwise it has started the same
 * command on the pinned runtime (forwarding signals and its exit status) or
 * printed why it cannot run, and the caller must do nothing more.
 */
function ensureRuntime() {
  const major = Number(process.versions.node.split('.')[0]);
  if (major >= MIN_MAJOR) return true;
  const bin = process.env.TRELLIS_NODE_REEXEC ? null : pinnedNode();
  if (!bin) {
    process.stderr.write(`trellis: Node.js ${MIN_MAJOR} or later is required, this is ${process.version}. Run \`npm ci\` (it installs the pinned Node ${MIN_MAJOR} runtime) and use \`npx trellis\`, or install Node.js ${MIN_MAJOR}. [TRELLIS_CLI_NODE_TOO_OLD]\n`);
    process.exitCode = 1;
    return false;
  }
  const child = spawn(bin, [...process.execArgv, process.argv[1], ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, TRELLIS_NODE_REEXEC: '1' } });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
  return false;
}

module.exports = { ensureRuntime, MIN_MAJOR };
