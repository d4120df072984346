/**
 * The error family for policy manifests and policy evaluation.
 *
 * Every code is stable and listed in docs/errors.md; callers match on `code`.
 * A manifest that cannot be accepted produces `PolicyIssue`s (all of them, with
 * file, document, line, column and field path); `PolicyError` is thrown when a
 * caller asks for policies that must be valid (the wire format, a strict load).
 */
import { TrellisError } from '../errors/trellis-error';
import type { PolicyIssue } from './policy-types';

/** Stable codes of the policy family. Errors refuse a document; warnings do not. */
export const POLICY_CODES = Object.freeze({
  /** The file is not well-formed YAML (or a document has duplicate keys). */
  YAML: 'TRELLIS_POLICY_YAML',
  /** A document is not a mapping, or has no `kind`/`apiVersion` we can read. */
  NOT_A_MANIFEST: 'TRELLIS_POLICY_NOT_A_MANIFEST',
  /** `apiVersion` is not one of the accepted groups/versions. */
  BAD_API_VERSION: 'TRELLIS_POLICY_BAD_API_VERSION',
  /** `kind` is not PeerAuthentication or AuthorizationPolicy. */
  UNKNOWN_KIND: 'TRELLIS_POLICY_UNKNOWN_KIND',
  /** A field that exists in neither Istio's API nor ours. */
  UNKNOWN_FIELD: 'TRELLIS_POLICY_UNKNOWN_FIELD',
  /** A required field is missing. */
  MISSING_FIELD: 'TRELLIS_POLICY_MISSING_FIELD',
  /** A field has the wrong type, an empty list, an out-of-range or malformed value. */
  INVALID_VALUE: 'TRELLIS_POLICY_INVALID_VALUE',
  /** Fields that are valid alone but not together (e.g. portLevelMtls without selector). */
  CONFLICT: 'TRELLIS_POLICY_CONFLICTING_FIELDS',
  /** A field or kind Istio supports but Trellis does not implement: refused, never ignored. */
  UNSUPPORTED: 'TRELLIS_POLICY_UNSUPPORTED',
  /** The same kind/namespace/name appears twice. */
  DUPLICATE: 'TRELLIS_POLICY_DUPLICATE',
  /** A file could not be read. */
  FILE: 'TRELLIS_POLICY_FILE',
  /** Policy manifests given as JSON (`policiesFromJSON`, tests and tools) are malformed. */
  WIRE: 'TRELLIS_POLICY_WIRE',
  /** Compiled AuthorizationPolicies from the control plane carry no or an unsupported `wireVersion` (the sidecar NACKs and keeps its set). */
  WIRE_VERSION: 'TRELLIS_POLICY_WIRE_VERSION',
  /** A field of the compiled AuthorizationPolicies is missing, unknown, of the wrong type or out of range (the sidecar NACKs and keeps its set). */
  WIRE_FIELD: 'TRELLIS_POLICY_WIRE_FIELD',
  /** Compiled AuthorizationPolicies are not in creation order, or name one policy twice (the sidecar NACKs and keeps its set). */
  WIRE_ORDER: 'TRELLIS_POLICY_WIRE_ORDER',
  /** Warning: a selector policy in the root namespace (PeerAuthentication) is ignored. */
  IGNORED_SELECTOR: 'TRELLIS_POLICY_IGNORED_SELECTOR',
  /** Warning: a selector with no labels selects every workload of the namespace. */
  EMPTY_SELECTOR: 'TRELLIS_POLICY_EMPTY_SELECTOR',
  /** Warning: a DENY rule with HTTP fields and no ports also denies TCP traffic on every port. */
  DENY_HTTP_ON_TCP: 'TRELLIS_POLICY_DENY_HTTP_ON_TCP',
});

/** One of the values of POLICY_CODES. */
export type PolicyCode = (typeof POLICY_CODES)[keyof typeof POLICY_CODES];

/** Thrown when policies that must be valid are not; `issues` holds every problem found. */
export class PolicyError extends TrellisError {
  /** Every error found (never only the first). */
  readonly issues: readonly PolicyIssue[];

  constructor(code: PolicyCode, message: string, issues: readonly PolicyIssue[] = [], details: Record<string, unknown> = {}) {
    super(code, message, { ...details, issues: issues.map(formatIssue) });
    this.issues = Object.freeze([...issues]);
  }
}

/** `file:line:col: doc N: path: message [CODE]`, the one-line form used by the CLI and logs. */
export function formatIssue(issue: PolicyIssue): string {
  // An object checked without text (an admission review) has no line: its name stands alone.
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  const doc = issue.documentIndex >= 0 ? ` document ${issue.documentIndex}` : '';
  const path = issue.path ? ` ${issue.path}:` : '';
  const sev = issue.severity === 'warning' ? ' warning:' : '';
  return `${where}:${doc}${sev}${path} ${issue.message} [${issue.code}]`;
}

/**
 * The one-line verdict on an object whose errors refuse it:
 * `the policy is invalid: <issue>` or `N problems: <issue>; <issue>`, each
 * issue as `formatIssue` prints it. The validating webhook's denial and the
 * control plane's status condition and Event say exactly this, so
 * `kubectl apply`, `kubectl describe` and `trellis validate` read the same.
 */
export function formatRejection(errors: readonly PolicyIssue[]): string {
  return `${errors.length === 1 ? 'the policy is invalid' : `${errors.length} problems`}: ${errors.map(formatIssue).join('; ')}`;
}
