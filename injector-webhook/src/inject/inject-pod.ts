/**
 * `injectPod(pod, config, context) → { patch, reason, injected }`: the whole
 * injection as a pure function from a pod (or pod template) to an RFC 6902
 * patch. The webhook and the offline `trellis inject` both call it.
 *
 * The patch only adds what it owns and replaces rewritten probes; it creates
 * `initContainers`, `volumes`, `metadata` and `metadata.annotations` when they
 * are absent, so it always applies to the pod it was computed from.
 */
import type { InjectionStatus } from '@trellis/shared';
import type { InjectorConfig } from '../config/injector-config';
import {
  DEFAULT_CONTAINER_ANNOTATION,
  EXCLUDE_INBOUND_ANNOTATION,
  NATIVE_SIDECAR_ANNOTATION,
  STATUS_ANNOTATION,
  UPSTREAMS_ANNOTATION,
  parseBooleanAnnotation,
  parsePortList,
  parseUpstreams,
} from './annotations';
import { decideInjection, type InjectionContext, type InjectionReason } from './inject-decision';
import { pointer, type JsonPatchOp } from './json-patch';
import { asPodLike, type PodLike } from './pod-shape';
import { planInboundPorts, type InboundPort } from './port-plan';
import { planProbeRewrites, type AppProbe } from './probe-rewrite';
import { INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME, initContainer, sidecarContainer, sidecarVolumes } from './sidecar-template';

/** What the status annotation records (JSON); its shape is shared with the control plane, which reads it. */
export type { InjectionStatus };

/** The result: the patch (empty when not injected) and why. */
export interface InjectionResult {
  injected: boolean;
  reason: InjectionReason;
  patch: JsonPatchOp[];
  /** Present when injected. */
  status?: InjectionStatus;
}

/**
 * Computes the injection patch for `pod`. Pure; the same input always gives
 * the same patch. Throws TRELLIS_INJECTOR_BAD_MANIFEST for a pod it cannot read
 * and TRELLIS_INJECTOR_BAD_ANNOTATION for a malformed Trellis annotation.
 */
export function injectPod(podValue: unknown, baseConfig: InjectorConfig, context: InjectionContext = {}): InjectionResult {
  const pod = asPodLike(podValue);
  const decision = decideInjection(pod, context);
  if (!decision.inject) return { injected: false, reason: decision.reason, patch: [] };

  const annotations = pod.metadata?.annotations ?? {};
  const native = parseBooleanAnnotation(NATIVE_SIDECAR_ANNOTATION, annotations[NATIVE_SIDECAR_ANNOTATION]) ?? baseConfig.nativeSidecar;
  const config: InjectorConfig = native === baseConfig.nativeSidecar ? baseConfig : { ...baseConfig, nativeSidecar: native };
  const labels = pod.metadata?.labels ?? {};
  const upstreams = parseUpstreams(annotations[UPSTREAMS_ANNOTATION]);
  const exclude = parsePortList(EXCLUDE_INBOUND_ANNOTATION, annotations[EXCLUDE_INBOUND_ANNOTATION]);
  const containers = pod.spec.containers;
  const inbound = planInboundPorts(containers, config, exclude);
  const rewrites = planProbeRewrites(containers, new Set(inbound.map((p) => p.appPort)), config.healthPort);
  const probes: Record<string, AppProbe> = {};
  for (const r of rewrites) probes[r.path] = r.original;

  const sidecar = sidecarContainer(config, { service: serviceName(pod), labels, inbound, upstreams, probes });
  const init = inbound.length > 0 ? initContainer(config, inbound) : undefined;
  const volumes = sidecarVolumes(config);
  const status: InjectionStatus = {
    version: 1,
    initContainers: [...(init ? [INIT_CONTAINER_NAME] : []), ...(config.nativeSidecar ? [SIDECAR_CONTAINER_NAME] : [])],
    containers: config.nativeSidecar ? [] : [SIDECAR_CONTAINER_NAME],
    volumes: volumes.map((v) => v.name as string),
    inbound: Object.fromEntries(inbound.map((p: InboundPort) => [String(p.appPort), p.listenPort])),
  };

  const patch: JsonPatchOp[] = [];
  // Probe replacements first, while container indexes are still the original ones.
  for (const r of rewrites) patch.push({ op: 'replace', path: pointer('spec', 'containers', r.containerIndex, r.field), value: r.probe });

  const inits: unknown[] = [...(init ? [init] : []), ...(config.nativeSidecar ? [sidecar] : [])];
  if (inits.length > 0) {
    if (!Array.isArray(pod.spec.initContainers)) patch.push({ op: 'add', path: pointer('spec', 'initContainers'), value: inits });
    else inits.forEach((c, i) => patch.push({ op: 'add', path: pointer('spec', 'initContainers', i), value: c }));
  }
  if (!config.nativeSidecar) patch.push({ op: 'add', path: pointer('spec', 'containers', 0), value: sidecar });

  if (!Array.isArray(pod.spec.volumes)) patch.push({ op: 'add', path: pointer('spec', 'volumes'), value: volumes });
  else for (const v of volumes) patch.push({ op: 'add', path: pointer('spec', 'volumes', '-'), value: v });

  const newAnnotations: Record<string, string> = { [STATUS_ANNOTATION]: JSON.stringify(status) };
  if (!config.nativeSidecar && annotations[DEFAULT_CONTAINER_ANNOTATION] === undefined) {
    newAnnotations[DEFAULT_CONTAINER_ANNOTATION] = containers[0]!.name;
  }
  if (pod.metadata === undefined || pod.metadata === null) {
    patch.push({ op: 'add', path: pointer('metadata'), value: { annotations: newAnnotations } });
  } else if (pod.metadata.annotations === undefined || pod.metadata.annotations === null) {
    patch.push({ op: 'add', path: pointer('metadata', 'annotations'), value: newAnnotations });
  } else {
    for (const [k, v] of Object.entries(newAnnotations)) patch.push({ op: 'add', path: pointer('metadata', 'annotations', k), value: v });
  }
  return { injected: true, reason: decision.reason, patch, status };
}

/**
 * The service name the sidecar announces: the `app` label, else
 * `app.kubernetes.io/name`, else the service account, else "default".
 */
export function serviceName(pod: PodLike): string {
  const labels = pod.metadata?.labels ?? {};
  return labels.app ?? labels['app.kubernetes.io/name'] ?? pod.spec.serviceAccountName ?? 'default';
}
