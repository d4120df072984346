/** @trellis/injector-webhook public API. */
export {};
