/** Re-exports for tests plus a silent logger bundle. */
import { silentLogger } from '@trellis/shared';
export * from '../../src/index';

/** Collaborators that stay quiet in tests. */
export const silentAuthz = { logger: silentLogger };
