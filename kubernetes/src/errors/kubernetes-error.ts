/**
 * The Kubernetes adapters' error family. Callers match on `code` (listed in
 * docs/errors.md, section "Kubernetes API"), never on the message.
 */
import { TrellisError } from '@trellis/shared';

/** Stable codes of @trellis/kubernetes. */
export const KubernetesErrorCode = {
  /** No --kubeconfig was given and the process does not run in a pod. */
  NO_CONFIG: 'TRELLIS_K8S_NO_CONFIG',
  /** The kubeconfig could not be read or has no usable cluster/user. */
  BAD_CONFIG: 'TRELLIS_K8S_BAD_CONFIG',
  /** The API server could not be reached (connection refused, TLS failure, timeout). */
  UNREACHABLE: 'TRELLIS_K8S_UNREACHABLE',
  /** 401/403: our credentials are refused or lack the RBAC permission. */
  FORBIDDEN: 'TRELLIS_K8S_FORBIDDEN',
  /** 404: no such object (or API). */
  NOT_FOUND: 'TRELLIS_K8S_NOT_FOUND',
  /** 409: a create of an existing object, or an update on a stale resourceVersion. */
  CONFLICT: 'TRELLIS_K8S_CONFLICT',
  /** Any other non-2xx answer; details carry the HTTP status and the Status reason. */
  API_ERROR: 'TRELLIS_K8S_API_ERROR',
  /** A 2xx answer that is not the JSON we asked for. */
  BAD_RESPONSE: 'TRELLIS_K8S_BAD_RESPONSE',
} as const;

/** One of the codes above. */
export type KubernetesErrorCodeValue = (typeof KubernetesErrorCode)[keyof typeof KubernetesErrorCode];

/** An error from the Kubernetes adapters; `code` says what went wrong. */
export class KubernetesError extends TrellisError<KubernetesErrorCodeValue> {}

/** The code for an HTTP status the API server answered with. */
export function codeForStatus(status: number): KubernetesErrorCodeValue {
  if (status === 401 || status === 403) return KubernetesErrorCode.FORBIDDEN;
  if (status === 404) return KubernetesErrorCode.NOT_FOUND;
  if (status === 409) return KubernetesErrorCode.CONFLICT;
  return KubernetesErrorCode.API_ERROR;
}
