/**
 * The validating webhook for policies: an AdmissionReview v1 for a
 * PeerAuthentication or AuthorizationPolicy (security.trellis.dev/v1, or
 * security.istio.io v1/v1beta1) is checked with exactly the validator
 * `trellis validate` and the control plane use (`parsePolicyObject` in
 * @trellis/shared), so `kubectl apply` refuses what they would refuse, with
 * the same field path, reason and code, the object's name standing in for the
 * file name. The CRD schema cannot say all of it (portLevelMtls keys must be
 * ports 1-65535, portLevelMtls needs a selector, DENY needs rules, ...), and
 * Kubernetes before 1.25 checks no CEL rules at all.
 *
 * Fail closed: a CREATE or UPDATE with any error is refused (allowed: false,
 * 422 Invalid). Warnings are passed to kubectl as admission warnings. DELETE
 * and other kinds are allowed untouched. Pure.
 */
import { formatIssue, formatRejection, parsePolicyObject, policyObjectName, DEFAULT_ROOT_NAMESPACE } from '@trellis/shared';
import { isObject } from '../inject/pod-shape';
import { ADMISSION_API_VERSION, admissionRequest, type ReviewOutcome, type AdmissionResponse } from './admission-review';

/** The API groups whose policies the webhook checks. */
export const POLICY_GROUPS = Object.freeze(['security.trellis.dev', 'security.istio.io']);
/** The kinds it checks. */
export const POLICY_KINDS = Object.freeze(['PeerAuthentication', 'AuthorizationPolicy']);

/** Options of the review. */
export interface PolicyReviewOptions {
  /** The mesh's root namespace (only changes warnings); default trellis-system. */
  rootNamespace?: string;
  now: Date;
}

/**
 * Answers one parsed AdmissionReview body for a policy. Throws
 * TRELLIS_INJECTOR_BAD_REVIEW when the body is not an AdmissionReview v1.
 */
export function reviewPolicyAdmission(body: unknown, opts: PolicyReviewOptions): ReviewOutcome {
  const req = admissionRequest(body);
  const kind = isObject(req.kind) ? req.kind : {};
  const namespace = typeof req.namespace === 'string' && req.namespace !== '' ? req.namespace : undefined;
  const name = typeof req.name === 'string' ? req.name : undefined;
  const answer = (response: Omit<AdmissionResponse, 'uid'>, outcome: ReviewOutcome['outcome'], reason: string): ReviewOutcome => ({
    review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid: req.uid, ...response } },
    outcome,
    reason,
    namespace,
    name,
  });
  if (!POLICY_GROUPS.includes(String(kind.group ?? '')) || !POLICY_KINDS.includes(String(kind.kind ?? ''))) return answer({ allowed: true }, 'ignored', 'not-a-policy');
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return answer({ allowed: true }, 'ignored', `operation-${String(req.operation ?? 'none').toLowerCase()}`);
  if (typeof req.subResource === 'string' && req.subResource !== '') return answer({ allowed: true }, 'ignored', 'subresource');

  const obj = isObject(req.object) ? { ...req.object } : req.object;
  // The object of a namespaced request carries its namespace in the request too; fill it in
  // when the body leaves it out, so the checks see the namespace the API server stores.
  if (isObject(obj) && namespace !== undefined) {
    const meta = isObject(obj.metadata) ? obj.metadata : {};
    if (meta.namespace === undefined) obj.metadata = { ...meta, namespace };
  }
  const source = policyObjectName(String(kind.kind), namespace ?? 'default', name ?? '?');
  const parsed = parsePolicyObject(obj, source, { firstSeen: opts.now, rootNamespace: opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE });
  const errors = parsed.issues.filter((i) => i.severity === 'error');
  const warnings = parsed.issues.filter((i) => i.severity === 'warning').map(formatIssue);
  if (errors.length > 0) {
    const message = `trellis: ${formatRejection(errors)}`;
    return answer({ allowed: false, status: { code: 422, reason: 'Invalid', message }, ...(warnings.length ? { warnings } : {}) }, 'denied', errors[0]!.code);
  }
  return answer({ allowed: true, ...(warnings.length ? { warnings } : {}) }, 'validated', 'valid');
}
