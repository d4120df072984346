'use strict';
/**
 * The sidecar's V8 young generation. On a machine with gigabytes of memory,
 * Node 24 lets V8 grow the young generation (new space) to 128 MB, two 64 MB
 * semi-spaces, once allocation is steady. A sidecar under sustained HTTP/2
 * load then sat at about 230 MB RSS, 128 MB of it new space. With 8 MB
 * semi-spaces (new space 16 MB) the same load measured about 128 MB RSS at
 * the same requests per second and CPU per request
 * (`npm run bench -- dataplane`, rss_mb.under_h2_load). A sidecar runs in
 * every pod, so that memory is paid once per pod.
 *
 * V8 sizes the young generation when the process starts and ignores
 * v8.setFlagsFromString afterwards, so `trellis sidecar` re-executes itself
 * in place (process.execve: same PID, nothing else is started) with
 * --max-semi-space-size. A size already chosen, on the command line or in
 * NODE_OPTIONS, is left alone: NODE_OPTIONS=--max-semi-space-size=N is how
 * an operator picks another one.
 */

/** The semi-space size (MB) a sidecar runs with unless one was chosen. */
const SIDECAR_SEMI_SPACE_MB = 8;

const FLAG = '--max-semi-space-size';

/** True when `args` (node options, as on a command line) already set the semi-space size. */
function setsSemiSpace(args) {
  return args.some((a) => a === FLAG || a.startsWith(`${FLAG}=`) || a === '--max_semi_space_size' || a.startsWith('--max_semi_space_size='));
}

/**
 * The node arguments to re-execute `trellis sidecar` with, or null when this
 * process should go on as it is: not the sidecar command, a size already
 * chosen, or this Node has no process.execve.
 */
function youngGenerationReexec(argv, execArgv, nodeOptions, hasExecve) {
  if (argv[0] !== 'sidecar' || !hasExecve) return null;
  const fromEnv = (nodeOptions || '').split(/\s+/).filter((a) => a !== '');
  if (setsSemiSpace(execArgv) || setsSemiSpace(fromEnv)) return null;
  return [...execArgv, `${FLAG}=${SIDECAR_SEMI_SPACE_MB}`];
}

/**
 * For `trellis sidecar`: replaces this process with the same command on a
 * bounded young generation, and does not return. Returns for anything else.
 */
function boundSidecarYoungGeneration() {
  const argv = process.argv.slice(2);
  const nodeArgs = youngGenerationReexec(argv, process.execArgv, process.env.NODE_OPTIONS, typeof process.execve === 'function');
  if (nodeArgs === null) return;
  try {
    process.execve(process.execPath, [process.execPath, ...nodeArgs, process.argv[1], ...argv], process.env);
  } catch (err) {
    // Memory, not security: the sidecar still works on V8's default sizing.
    process.stderr.write(`trellis: could not restart with ${FLAG}=${SIDECAR_SEMI_SPACE_MB} (${err && err.message ? err.message : err}); going on with V8's default young generation\n`);
  }
}

module.exports = { boundSidecarYoungGeneration, youngGenerationReexec, SIDECAR_SEMI_SPACE_MB };
