/**
 * The entry point of the sidecar bundle (`cli/dist/trellis-sidecar.js`, built by
 * `cli/scripts/bundle-sidecar.js` after tsc).
 *
 * A sidecar runs in every pod, so its resident memory is paid thousands of
 * times. Loaded as ~80 separate CommonJS modules, Node's module resolution
 * alone calls path.resolve often enough for V8 to start its optimizing
 * compiler during start-up, which maps ~4 MB of compiler code and zone
 * memory before the sidecar has moved one byte. One bundled file loads with
 * a single resolution. Everything the sidecar process runs (the dispatcher,
 * the `sidecar` command, @trellis/sidecar and @trellis/shared) is in the
 * bundle, so there is exactly one copy of each class (error `instanceof`
 * checks hold); only the libraries loaded on demand (yaml, ajv for --config
 * files) stay in node_modules.
 */
import { runCli, type RunOptions } from './main';
import { commands } from './commands/sidecar';

/** Runs `trellis sidecar ...` (argv starts with "sidecar") with only the sidecar command loaded. */
export function runSidecarCli(options: RunOptions): Promise<number> {
  return runCli({ ...options, commands });
}

// The same library the command runs, for the dataplane benchmark's sidecar
// processes, so that what it measures is what `trellis sidecar` loads.
export { Sidecar, makeCredentials, makeTrustBundle, policiesFromWire, sharedAuthorizer } from '@trellis/sidecar';
export type { InboundSpec, OutboundSpec } from '@trellis/sidecar';
export { silentLogger } from '@trellis/shared';
