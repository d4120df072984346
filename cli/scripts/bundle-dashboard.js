#!/usr/bin/env node
'use strict';
// Bundles the dashboard page into cli/dist/dashboard/app.js and app.css, which
// `trellis dashboard` serves (nothing comes from a CDN). Runs after `tsc -b` as
// part of `npm run build`; bundles the compiled JavaScript of
// cli/src/dashboard/page, so tsc stays the only type checker.
const { join } = require('node:path');
const esbuild = require('esbuild');

const cliDir = join(__dirname, '..');
const out = join(cliDir, 'dist', 'dashboard');
const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning' };

Promise.all([
  esbuild.build({ ...common, entryPoints: [join(cliDir, 'dist', 'dashboard-page', 'main.js')], outfile: join(out, 'app.js'), platform: 'browser', format: 'iife', target: 'es2022' }),
  esbuild.build({ ...common, entryPoints: [join(cliDir, 'src', 'dashboard', 'page', 'dashboard.css')], outfile: join(out, 'app.css') }),
]).catch(() => {
  process.exitCode = 1;
});
