/** Re-exports for tests plus a silent logger bundle. */
import { AUTHZ_WIRE_VERSION, encodeAuthorizationPolicies, policiesFromJSON, silentLogger, type AuthorizationPolicy } from '@trellis/shared';
import { policiesFromWire } from '../../src/index';
export * from '../../src/index';

/**
 * Istio-shaped manifests (JSON, as tests write them) → what a sidecar holds:
 * validated as the control plane validates them, compiled to the wire form,
 * then decoded by the sidecar's own decoder.
 */
export function policiesFromManifests(manifests: unknown[]): object[] {
  const ap = policiesFromJSON(manifests, 'test manifests').filter((p): p is AuthorizationPolicy => p.kind === 'AuthorizationPolicy');
  return policiesFromWire(JSON.parse(JSON.stringify({ wireVersion: AUTHZ_WIRE_VERSION, policies: encodeAuthorizationPolicies(ap) })));
}

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
