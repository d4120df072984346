'use strict';
/**
 * Loads the native relay engine if it was built; `Relay` is null otherwise
 * (and `loadError` says why), so the sidecar relays with node:tls.
 */
let Relay = null;
let loadError = null;
try {
  Relay = require('./build/Release/tls_relay.node').Relay;
} catch (err) {
  loadError = err;
}
module.exports = { Relay, loadError };
