/** Test helpers for policy suites: parse YAML that must be valid, and find the corpora. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
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

/**
 * The Istio corpus folder. Missing corpora fail loudly: a test that silently
 * skipped them would claim compatibility nobody checked.
 */
export function istioCorpusDir(): string {
  const base = process.env['TRELLIS_CORPORA_DIR'] ?? join(__dirname, '..', '..', '..', '..', '..', 'shared', 'corpora');
  const dir = join(base, 'istio-security-policies');
  if (!existsSync(join(dir, 'manifest.json'))) throw new Error(`Istio policy corpus not found at ${dir}; set TRELLIS_CORPORA_DIR`);
  return dir;
}
