/**
 * AdmissionReview v1 in, AdmissionReview v1 out: the webhook's decision, free
 * of HTTP. Parsing is strict about what it needs (apiVersion, kind, request,
 * uid) and tolerant of every field it does not use.
 *
 * Outcomes:
 * - not an AdmissionReview v1 / no uid → an `InjectorError` (the server answers
 *   HTTP 400: without a uid there is nothing to echo);
 * - not a Pod, or not CREATE → allowed, no patch;
 * - a Pod CREATE that should not be injected → allowed, no patch, reason in status;
 * - a Pod CREATE that cannot be injected (malformed pod or Trellis annotation)
 *   → allowed: false with a 400 status naming the field. This is fail closed:
 *   a pod in a mesh namespace must not start without its sidecar.
 */
import type { InjectorConfig } from '../config/injector-config';
import { InjectorError } from '../errors/injector-error';
import { injectPod, type InjectionResult } from '../inject/inject-pod';
import { encodePatch } from '../inject/json-patch';
import { isObject } from '../inject/pod-shape';
import { TrellisError } from '@trellis/shared';

/** The AdmissionReview API version we speak (the only one). */
export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** AdmissionResponse as sent back. */
export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code?: number; message: string; reason?: string };
  auditAnnotations?: Record<string, string>;
  /** Shown by kubectl as `Warning: ...` (admission.k8s.io/v1, Kubernetes 1.19+). */
  warnings?: string[];
}

/** The full answer: the AdmissionReview to send, plus what happened (for logs). */
export interface ReviewOutcome {
  review: { apiVersion: string; kind: 'AdmissionReview'; response: AdmissionResponse };
  /** Stable word for logs and metrics: injected | skipped | ignored | denied | validated. */
  outcome: 'injected' | 'skipped' | 'ignored' | 'denied' | 'validated';
  reason: string;
  namespace?: string;
  name?: string;
}

/**
 * Answers one parsed AdmissionReview body. Throws TRELLIS_INJECTOR_BAD_REVIEW
 * when the body is not an AdmissionReview v1 with a request uid.
 */
export function reviewAdmission(body: unknown, config: InjectorConfig): ReviewOutcome {
  const req = admissionRequest(body);
  const uid = req.uid;
  const namespace = typeof req.namespace === 'string' && req.namespace !== '' ? req.namespace : undefined;
  const kind = isObject(req.kind) ? req.kind : {};
  const base = { namespace, name: typeof req.name === 'string' ? req.name : undefined };
  const answer = (response: Omit<AdmissionResponse, 'uid'>, outcome: ReviewOutcome['outcome'], reason: string): ReviewOutcome => ({
    review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } },
    outcome,
    reason,
    ...base,
  });

  if (kind.kind !== 'Pod' || (kind.group ?? '') !== '') return answer({ allowed: true }, 'ignored', 'not-a-pod');
  if (req.operation !== 'CREATE') return answer({ allowed: true }, 'ignored', `operation-${String(req.operation ?? 'none').toLowerCase()}`);
  if (typeof req.subResource === 'string' && req.subResource !== '') return answer({ allowed: true }, 'ignored', 'subresource');

  let result: InjectionResult;
  try {
    if (!isObject(req.object)) throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', 'request.object: a Pod CREATE must carry the pod', { field: 'request.object' });
    const podNs = isObject(req.object.metadata) && typeof req.object.metadata.namespace === 'string' ? req.object.metadata.namespace : undefined;
    result = injectPod(req.object, config, { namespace: namespace ?? podNs, namespaceInjection: 'enabled' });
  } catch (err) {
    if (!(err instanceof TrellisError)) throw err;
    return answer({ allowed: false, status: { code: 400, reason: 'BadRequest', message: `trellis injector: ${err.message} [${err.code}]` } }, 'denied', err.code);
  }
  if (!result.injected) {
    return answer({ allowed: true, auditAnnotations: { 'trellis-injection': result.reason } }, 'skipped', result.reason);
  }
  return answer(
    { allowed: true, patchType: 'JSONPatch', patch: encodePatch(result.patch), auditAnnotations: { 'trellis-injection': result.reason } },
    'injected',
    result.reason,
  );
}

/**
 * The `request` of an AdmissionReview v1 body, with its uid checked. Throws
 * TRELLIS_INJECTOR_BAD_REVIEW otherwise (shared by every webhook endpoint).
 */
export function admissionRequest(body: unknown): Record<string, unknown> & { uid: string } {
  if (!isObject(body)) throw badReview('body must be a JSON object');
  if (body.kind !== 'AdmissionReview') throw badReview(`kind must be "AdmissionReview", got ${JSON.stringify(body.kind ?? null)}`);
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    throw badReview(`apiVersion must be "${ADMISSION_API_VERSION}", got ${JSON.stringify(body.apiVersion ?? null)} (set admissionReviewVersions: [v1])`);
  }
  const req = body.request;
  if (!isObject(req)) throw badReview('request is missing');
  if (typeof req.uid !== 'string' || req.uid === '') throw badReview('request.uid is missing');
  return req as Record<string, unknown> & { uid: string };
}

function badReview(message: string): InjectorError {
  return new InjectorError('TRELLIS_INJECTOR_BAD_REVIEW', `not an AdmissionReview v1: ${message}`);
}
