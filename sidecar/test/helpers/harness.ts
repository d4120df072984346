/** Re-exports for tests plus a silent logger bundle. */
import { silentLogger } from '@trellis/shared';
export * from '../../src/index';

/** Collaborators that stay quiet in tests. */
export const silentAuthz = { logger: silentLogger };

import { nativeRelay as loadNativeRelay, nativeRelayUnavailable as whyNoNativeRelay } from '../../src/index';

/**
 * The data paths a data-plane test runs on: always the Node path, and the
 * native relay when it is built. With TRELLIS_REQUIRE_NATIVE_RELAY=1 (CI) a
 * missing relay throws here rather than quietly halving the coverage.
 */
let warned = false;
export function dataPaths(): Array<'native' | 'node'> {
  if (process.env.TRELLIS_DATA_PATH === 'node') return ['node'];
  if (loadNativeRelay()) return ['native', 'node'];
  if (warned) return ['node'];
  warned = true;
  // eslint-disable-next-line no-console
  console.warn(`[sidecar tests] native relay not in use (${whyNoNativeRelay() ?? 'unknown'}); data-plane tests run on the Node path only`);
  return ['node'];
}
