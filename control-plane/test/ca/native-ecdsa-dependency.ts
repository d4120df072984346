/** The native ECDSA verifier as an optional test dependency (CI requires it: TRELLIS_REQUIRE_NATIVE_ECDSA=1). */
import { optionalDependency } from '@trellis/testkit';
import { loadNativeEcdsaVerify, NATIVE_ECDSA_PACKAGE } from '../../src/ca/native-ecdsa';

/** @trellis/ecdsa-verify built and passing its self-test. */
export const NATIVE_ECDSA = optionalDependency({
  name: 'the native ECDSA verifier',
  requireEnv: 'TRELLIS_REQUIRE_NATIVE_ECDSA',
  probe: () => (loadNativeEcdsaVerify() ? undefined : `${NATIVE_ECDSA_PACKAGE} was not built (npm ci builds it when g++, make and python3 are installed)`),
});
