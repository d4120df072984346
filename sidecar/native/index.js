'use strict';
/**
 * Loads the native relay engine if it was built; `Relay` is null otherwise
 * (and `loadError` says why), so the sidecar relays with node:tls.
 * TRELLIS_NATIVE_BUILD=sanitize loads the ASan/UBSan build instead
 * (scripts/native-sanitize.js; node must have the ASan runtime preloaded).
 */
let Relay = null;
let loadError = null;
try {
  Relay = require(`./build/${process.env.TRELLIS_NATIVE_BUILD === 'sanitize' ? 'Sanitize' : 'Release'}/tls_relay.node`).Relay;
} catch (err) {
  loadError = err;
}
module.exports = { Relay, loadError };
