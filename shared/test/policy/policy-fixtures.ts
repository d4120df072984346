/** Test helpers for policy suites: parse YAML that must be valid (the corpora are found by @trellis/testkit). */
import { buildPolicySet, formatIssue, parsePolicyFile, type Policy, type PolicySet } from '../../src';

/** A fixed "first seen" time so timestamps in tests are exact. */
export const FIRST_SEEN = new Date('2024-01-01T00:00:00Z');

/** Parses YAML that the test expects to be valid; throws with every issue otherwise. */
export function policies(yaml: string, file = 'test.yaml'): Policy[] {
  const r = parsePolicyFile(yaml, file, { firstSeen: FIRST_SEEN });
  const errors = r.issues.filter((i) => i.severity === 'error');
  if (errors.length) throw new Error(`fixture is invalid:\n${errors.map(formatIssue).join('\n')}`);
  return r.policies;
}

/** A PolicySet from valid YAML. */
export function policySet(yaml: string): PolicySet {
  return buildPolicySet(policies(yaml));
}
