'use strict';
// Install step of @trellis/tls-relay (see scripts/build-native-addon.js).
require('../../scripts/build-native-addon.js').buildNativeAddon({
  dir: __dirname,
  name: '@trellis/tls-relay',
  fallback: 'the sidecar will relay with node:tls',
});
