/** @trellis/test: helpers for the cross-package and end-to-end suites. */
export { PodNetwork } from './netns/pod-network';
export type { Pod } from './netns/pod-network';
