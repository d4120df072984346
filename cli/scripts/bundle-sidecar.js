#!/usr/bin/env node
'use strict';
// Bundles what a `trellis sidecar` process runs into cli/dist/trellis-sidecar.js
// (see cli/src/sidecar-entry.ts for why). Runs after `tsc -b` as part of
// `npm run build`; bundles the compiled JavaScript, so tsc stays the only
// type checker. Libraries loaded on demand stay external.
const { join } = require('node:path');
const esbuild = require('esbuild');

const cliDir = join(__dirname, '..');
const ON_DEMAND = ['yaml', 'ajv', 'ajv-formats'];
// The native relay loads a compiled .node file from its own package directory.
const NATIVE = ['@trellis/tls-relay'];

esbuild
  .build({
    entryPoints: [join(cliDir, 'dist', 'src', 'sidecar-entry.js')],
    outfile: join(cliDir, 'dist', 'trellis-sidecar.js'),
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    external: [...ON_DEMAND, ...NATIVE],
    // Readable stack traces matter more than a few hundred KB on disk.
    minify: false,
    legalComments: 'inline',
    logLevel: 'warning',
  })
  .catch(() => {
    process.exitCode = 1;
  });
