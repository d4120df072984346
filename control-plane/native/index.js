'use strict';
/**
 * Loads the native verifier if it was built; `verify` is null otherwise
 * (and `loadError` says why), so callers fall back to node:crypto.
 * TRELLIS_NATIVE_BUILD=sanitize loads the ASan/UBSan build instead
 * (scripts/native-sanitize.js; node must have the ASan runtime preloaded).
 */
let verify = null;
let loadError = null;
try {
  verify = require(`./build/${process.env.TRELLIS_NATIVE_BUILD === 'sanitize' ? 'Sanitize' : 'Release'}/ecdsa_verify.node`).verify;
} catch (err) {
  loadError = err;
}
module.exports = { verify, loadError };
