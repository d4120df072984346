'use strict';
// Install step of @trellis/ecdsa-verify (see scripts/build-native-addon.js).
require('../../scripts/build-native-addon.js').buildNativeAddon({
  dir: __dirname,
  name: '@trellis/ecdsa-verify',
  fallback: 'the CA will verify CSRs with node:crypto',
});
