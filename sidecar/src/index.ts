/** @trellis/sidecar public API. */
export {};
