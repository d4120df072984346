#!/usr/bin/env node
'use strict';
// Entry point of the `trellis` command; all logic lives in cli/src/main.ts.
const { runCli } = require('../dist/src/main');

const controller = new AbortController();
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    signals += 1;
    if (signals > 1) process.exit(130);
    controller.abort(sig);
  });
}
runCli({ argv: process.argv.slice(2), stopSignal: controller.signal }).then(
  (code) => { process.exitCode = code; },
  (err) => { process.stderr.write(`trellis: ${err && err.message ? err.message : err}\n`); process.exitCode = 1; },
);
