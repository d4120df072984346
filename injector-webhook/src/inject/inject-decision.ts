/**
 * Whether a pod gets a sidecar, and why.
 *
 * Order: hostNetwork pods never (the redirect rules would rewrite the node's
 * own network); already-injected pods never (idempotent: the status
 * annotation or our container names are present); then the pod label, then
 * the pod annotation (Istio's `sidecar.istio.io/inject` is read after ours at
 * each level, so manifests written for Istio keep their opt-outs), then the namespace (which the webhook's namespaceSelector
 * has already applied, so inside the webhook it defaults to enabled).
 */
import { INJECT_KEY, ISTIO_INJECT_KEY, STATUS_ANNOTATION, parseInjectFlag } from './annotations';
import type { PodLike } from './pod-shape';
import { INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME } from './sidecar-template';

/** Stable reasons; logged and returned so an operator can see why. */
export type InjectionReason =
  | 'host-network'
  | 'already-injected'
  | 'no-containers'
  | 'pod-label-true'
  | 'pod-label-false'
  | 'annotation-true'
  | 'annotation-false'
  | 'namespace-enabled'
  | 'namespace-disabled';

/** What the caller knows about where the pod lives. */
export interface InjectionContext {
  /** Namespace of the request (pods from templates often lack metadata.namespace). */
  namespace?: string;
  /**
   * The namespace's `trellis-injection` state. The webhook is only called for
   * enabled namespaces (or pods labelled true), so it passes 'enabled'; offline
   * injection also defaults to 'enabled', like `istioctl kube-inject`.
   */
  namespaceInjection?: 'enabled' | 'disabled';
}

/** The decision and its reason. */
export interface InjectionDecision {
  inject: boolean;
  reason: InjectionReason;
}

/**
 * Decides injection for `pod`. Pure. Throws TRELLIS_INJECTOR_BAD_ANNOTATION when
 * the inject label or annotation is neither "true" nor "false".
 */
export function decideInjection(pod: PodLike, context: InjectionContext = {}): InjectionDecision {
  if (pod.spec.hostNetwork === true) return { inject: false, reason: 'host-network' };
  const annotations = pod.metadata?.annotations ?? {};
  const names = [...pod.spec.containers, ...(pod.spec.initContainers ?? [])].map((c) => c.name);
  if (annotations[STATUS_ANNOTATION] !== undefined || names.includes(SIDECAR_CONTAINER_NAME) || names.includes(INIT_CONTAINER_NAME)) {
    return { inject: false, reason: 'already-injected' };
  }
  const labels = pod.metadata?.labels ?? {};
  const label = parseInjectFlag(labels[INJECT_KEY], 'label') ?? parseInjectFlag(labels[ISTIO_INJECT_KEY], 'label', ISTIO_INJECT_KEY);
  const annotation = parseInjectFlag(annotations[INJECT_KEY], 'annotation') ?? parseInjectFlag(annotations[ISTIO_INJECT_KEY], 'annotation', ISTIO_INJECT_KEY);
  let decision: InjectionDecision;
  if (label !== undefined) decision = { inject: label, reason: label ? 'pod-label-true' : 'pod-label-false' };
  else if (annotation !== undefined) decision = { inject: annotation, reason: annotation ? 'annotation-true' : 'annotation-false' };
  else if ((context.namespaceInjection ?? 'enabled') === 'enabled') decision = { inject: true, reason: 'namespace-enabled' };
  else decision = { inject: false, reason: 'namespace-disabled' };
  if (decision.inject && pod.spec.containers.length === 0) return { inject: false, reason: 'no-containers' };
  return decision;
}
