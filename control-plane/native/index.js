'use strict';
/**
 * Loads the native verifier if it was built; `verify` is null otherwise
 * (and `loadError` says why), so callers fall back to node:crypto.
 */
let verify = null;
let loadError = null;
try {
  verify = require('./build/Release/ecdsa_verify.node').verify;
} catch (err) {
  loadError = err;
}
module.exports = { verify, loadError };
