#!/usr/bin/env node
'use strict';
// Entry point of the `trellis` command; all logic lives in cli/src/main.ts.
// `trellis sidecar` runs from the one-file bundle the build makes (see
// cli/src/sidecar-entry.ts): a sidecar per pod, so its start-up memory counts.
const path = require('node:path');
const fs = require('node:fs');
const { ensureRuntime } = require('./node-runtime');

function entry(argv) {
  const bundle = path.join(__dirname, '..', 'dist', 'trellis-sidecar.js');
  if (argv[0] === 'sidecar' && fs.existsSync(bundle)) return require(bundle).runSidecarCli;
  return require('../dist/src/main').runCli;
}
if (ensureRuntime()) main();

function main() {
  const argv = process.argv.slice(2);
  const runCli = entry(argv);

  const controller = new AbortController();
  let signals = 0;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      signals += 1;
      if (signals > 1) process.exit(130);
      controller.abort(sig);
    });
  }
  runCli({ argv, stopSignal: controller.signal }).then(
    (code) => { process.exitCode = code; lingerGuard(controller.signal); },
    (err) => { process.stderr.write(`trellis: ${err && err.message ? err.message : err}\n`); process.exitCode = 1; lingerGuard(controller.signal); },
  );
}

// A command told to stop has finished its shutdown; whatever it left open (a
// keep-alive socket, a retry timer of a library) must not keep the process
// alive. Normally the process has exited before this timer (unref'd) fires.
function lingerGuard(stopSignal) {
  if (!stopSignal.aborted) return;
  setTimeout(() => {
    process.stderr.write(`trellis: exiting with handles still open: ${process.getActiveResourcesInfo().join(', ')}\n`);
    process.exit();
  }, 2000).unref();
}
