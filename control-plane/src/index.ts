/** @trellis/control-plane public API. */
export {};
