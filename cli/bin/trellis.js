#!/usr/bin/env node
'use strict';
// Entry point of the `trellis` command; all logic lives in cli/src/main.ts.
// `trellis sidecar` runs from the one-file bundle the build makes (see
// cli/src/sidecar-entry.ts): a sidecar per pod, so its start-up memory counts.
const path = require('node:path');
const fs = require('node:fs');
const { ensureRuntime } = require('./node-runtime');
const { boundSidecarYoungGeneration } = require('./young-generation');

function entry(argv) {
  const bundle = path.join(__dirname, '..', 'dist', 'trellis-sidecar.js');
  if (argv[0] === 'sidecar' && fs.existsSync(bundle)) return require(bundle).runSidecarCli;
  return require('../dist/src/main').runCli;
}
if (ensureRuntime()) {
  boundSidecarYoungGeneration();
  main();
}

function main() {
  const argv = process.argv.slice(2);
  const runCli = entry(argv);

  const controller = new AbortController();
  let signals = 0;
  let settled = false;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      signals += 1;
      // A second signal, or one after the command has returned (nothing is listening for it any more).
      if (signals > 1 || settled) process.exit(130);
      controller.abort(sig);
    });
  }
  const done = (code) => {
    settled = true;
    process.exitCode = code;
    if (controller.signal.aborted || code !== 0) lingerGuard();
  };
  runCli({ argv, stopSignal: controller.signal }).then(done, (err) => {
    process.stderr.write(`trellis: ${err && err.message ? err.message : err}\n`);
    done(1);
  });
}

// A command that was told to stop, or that failed, has returned: whatever it
// left open (a server a failed start had already bound, a keep-alive socket,
// a library's retry timer) must not keep the process alive, or a supervisor
// waits on a process that does nothing (a control plane whose admin port was
// taken stayed up, deaf to SIGTERM). Normally the process has exited before
// this timer (unref'd) fires; output still being written is waited for.
function lingerGuard() {
  const check = () => {
    if (process.stdout.writableLength > 0 || process.stderr.writableLength > 0) return setTimeout(check, 500).unref();
    process.stderr.write(`trellis: exiting with handles still open: ${process.getActiveResourcesInfo().join(', ')}\n`);
    process.exit();
  };
  setTimeout(check, 2000).unref();
}
