/**
 * Judges the node a sidecar announces on its first request against what was
 * attested for the identity that opened the stream. Pure: (node, attestation,
 * peer address) → the node the control plane will use, or the refusal with
 * its code and reason.
 *
 * The rule (fails closed): a sidecar may repeat what was attested or say
 * less, never more or otherwise. Service and labels are always the attested
 * ones (an empty claim is not a disagreement); announced inbound ports must
 * be attested ones and only those are published; the published address is
 * always the one the control plane sees the stream come from, so a sidecar
 * cannot publish an address it does not connect from (Istio takes the pod IP
 * from the API server for the same reason). A node is bounded in size before
 * anything else is looked at.
 *
 * A stream attested by its Kubernetes pod (`kubernetes-pod`) is served by
 * that pod's facts from the API server, whatever its node says: its labels
 * (policies select on them, and follow them when the pod is relabelled), no
 * endpoints of its own (the API server's EndpointSlices publish the pod),
 * and its pod IP. A service, labels or ports claim that disagrees with the
 * pod is ignored, not refused (the injector derives the claims from the pod
 * at admission: a relabelled pod, or an `app` label that is not a Service
 * name, must not cut a legitimate sidecar off), and reported in `ignored`;
 * an address that is not the pod's IP, another namespace or another
 * ServiceAccount are refused, as they can only be wrong.
 */
import { parseKubernetesSpiffeId, type NodeMessage } from '@trellis/shared';
import { ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { PodFacts } from '../registry/pod-facts';
import { describeSource, type WorkloadAttestation } from './workload-attestation';
import { sameLabels, WORKLOAD_METADATA_LIMITS as LIMITS } from './workload-metadata';

/** The node after judgement, frozen: attested facts only, plus the ports the sidecar serves. */
export interface SessionNode {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly service: string;
  readonly inboundPorts: readonly number[];
  /** The address the stream came from. */
  readonly address: string;
}

/** Which claim disagreed with the attestation (the `reason` label of trellis_attestation_refusals_total). */
export type ClaimReason = 'service' | 'labels' | 'ports' | 'address' | 'namespace';

/** The verdict on one node. */
export type NodeVerdict =
  | {
      readonly ok: true;
      readonly node: SessionNode;
      /** Claims that disagreed with the pod and were ignored (only for `kubernetes-pod`; else empty). */
      readonly ignored: readonly ClaimReason[];
    }
  | {
      readonly ok: false;
      readonly code: typeof ControlPlaneErrorCode.BAD_REQUEST | typeof ControlPlaneErrorCode.NODE_TOO_LARGE | typeof ControlPlaneErrorCode.IDENTITY_MISMATCH | typeof ControlPlaneErrorCode.ATTESTATION_MISMATCH;
      /** Set for ATTESTATION_MISMATCH. */
      readonly reason?: ClaimReason;
      readonly message: string;
    };

/**
 * Judges `n` for the stream authenticated as `attested.spiffeId`, seen coming
 * from `peerHost`. For a `kubernetes-pod` attestation, `pod` is that pod's
 * facts from the API server; without them the attestation counts as the
 * identity alone (fail closed).
 */
export function judgeNode(n: Partial<NodeMessage> | null | undefined, attested: WorkloadAttestation, peerHost: string, pod?: PodFacts | null): NodeVerdict {
  const C = ControlPlaneErrorCode;
  if (!n) return { ok: false, code: C.BAD_REQUEST, message: 'the first request on a stream must carry node' };
  const tooLarge = sizeProblem(n);
  if (tooLarge) return { ok: false, code: C.NODE_TOO_LARGE, message: `node: ${tooLarge}` };
  const ports = n.inbound_ports ?? [];
  for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) return { ok: false, code: C.BAD_REQUEST, message: `node.inbound_ports: ${String(p).slice(0, 20)} is not a port` };

  const claimedId = n.spiffe_id ?? '';
  if (claimedId !== '' && claimedId !== attested.spiffeId) {
    return { ok: false, code: C.IDENTITY_MISMATCH, message: `node.spiffe_id ${claimedId.slice(0, 300)} is not the authenticated identity ${attested.spiffeId}` };
  }
  const mismatch = (reason: ClaimReason, what: string): NodeVerdict => ({
    ok: false,
    code: C.ATTESTATION_MISMATCH,
    reason,
    message: `node.${what}, which disagrees with what ${describeSource(attested)} attests for ${attested.spiffeId}`,
  });
  const namespace = n.namespace ?? '';
  if (namespace !== '' && namespace !== attested.namespace) {
    // An ns/NS/sa/SA identity in another namespace has always been an identity mismatch; keep its code.
    if (attested.namespace !== '') return { ok: false, code: C.IDENTITY_MISMATCH, message: `node.namespace ${namespace.slice(0, 100)} is not the identity's namespace ${attested.namespace}` };
    return mismatch('namespace', `namespace claims "${namespace.slice(0, 100)}" for an identity that names no namespace`);
  }
  if (attested.source === 'kubernetes-pod' && pod) return judgePodNode(n, attested, pod, mismatch);
  const w = attested.workload;
  const service = n.service ?? '';
  if (service !== '' && service !== w.service) return mismatch('service', `service claims "${service.slice(0, 253)}"${w.service ? ` (attested: "${w.service}")` : ' (no service attested)'}`);
  const labels = n.labels ?? {};
  if (Object.keys(labels).length > 0 && !sameLabels(labels, w.labels)) return mismatch('labels', `labels claim ${labelText(labels)} (attested: ${labelText(w.labels)})`);
  const extra = ports.filter((p) => !w.inboundPorts.includes(p));
  if (extra.length > 0) return mismatch('ports', `inbound_ports claims ${extra.join(',')} (attested: ${w.inboundPorts.join(',') || 'none'})`);
  const seen = normalHost(peerHost);
  const address = n.address ?? '';
  if (address !== '' && normalHost(address) !== seen) return mismatch('address', `address claims ${address.slice(0, 100)} but the stream comes from ${seen}`);
  return {
    ok: true,
    node: Object.freeze({
      spiffeId: attested.spiffeId,
      namespace: attested.namespace,
      labels: w.labels,
      service: w.service,
      inboundPorts: Object.freeze([...new Set(ports)]),
      address: seen,
    }),
    ignored: [],
  };
}

/**
 * The node a pod-attested stream is served as: the pod's labels and IP, and
 * no service or ports of its own (the API server publishes the pod's
 * endpoints). Used when the stream opens and again when the pod changes.
 */
export function podNode(attested: WorkloadAttestation, pod: PodFacts): SessionNode {
  return Object.freeze({
    spiffeId: attested.spiffeId,
    namespace: attested.namespace,
    labels: pod.labels,
    service: '',
    inboundPorts: Object.freeze([]),
    address: pod.ips[0] ?? '',
  });
}

/** The kubernetes-pod half of judgeNode (identity and namespace claims already checked). */
function judgePodNode(n: Partial<NodeMessage>, attested: WorkloadAttestation, pod: PodFacts, mismatch: (reason: ClaimReason, what: string) => NodeVerdict): NodeVerdict {
  const C = ControlPlaneErrorCode;
  const k8s = parseKubernetesSpiffeId(attested.spiffeId);
  if (!k8s || k8s.namespace !== pod.namespace || k8s.serviceAccount !== pod.serviceAccount) {
    return { ok: false, code: C.IDENTITY_MISMATCH, message: `pod ${pod.namespace}/${pod.name} runs as ServiceAccount ${pod.serviceAccount}, not as ${attested.spiffeId}` };
  }
  const address = n.address ?? '';
  if (address !== '' && pod.ips.length > 0 && !pod.ips.map(normalHost).includes(normalHost(address))) {
    return mismatch('address', `address claims ${address.slice(0, 100)} but pod ${pod.namespace}/${pod.name} has IP ${pod.ips.join(',')}`);
  }
  const ignored: ClaimReason[] = [];
  const service = n.service ?? '';
  if (service !== '' && !pod.services.some((s) => s === service || `${s}.${pod.namespace}` === service)) ignored.push('service');
  const labels = n.labels ?? {};
  if (Object.keys(labels).length > 0 && !sameLabels(labels, pod.labels)) ignored.push('labels');
  if ((n.inbound_ports ?? []).some((p) => !pod.inboundPorts.includes(p))) ignored.push('ports');
  return { ok: true, node: podNode(attested, pod), ignored };
}

/** The first bound `n` breaks (WORKLOAD_METADATA_LIMITS), or null. Counts before it sums, so a huge map costs one pass. */
function sizeProblem(n: Partial<NodeMessage>): string | null {
  const labels = Object.entries(n.labels ?? {});
  if (labels.length > LIMITS.maxLabels) return `${labels.length} labels, at most ${LIMITS.maxLabels}`;
  const ports = n.inbound_ports ?? [];
  if (ports.length > LIMITS.maxPorts) return `${ports.length} inbound ports, at most ${LIMITS.maxPorts}`;
  if ((n.service ?? '').length > LIMITS.maxServiceChars) return `service longer than ${LIMITS.maxServiceChars} characters`;
  let bytes = ports.length * 4;
  for (const s of [n.spiffe_id, n.namespace, n.service, n.address]) bytes += Buffer.byteLength(s ?? '');
  for (const [k, v] of labels) {
    if (k.length > LIMITS.maxLabelKeyChars) return `label key longer than ${LIMITS.maxLabelKeyChars} characters`;
    if (String(v).length > LIMITS.maxLabelValueChars) return `label ${k.slice(0, 80)}: value longer than ${LIMITS.maxLabelValueChars} characters`;
    bytes += Buffer.byteLength(k) + Buffer.byteLength(String(v));
  }
  if (bytes > LIMITS.maxNodeBytes) return `${bytes} bytes, at most ${LIMITS.maxNodeBytes}`;
  return null;
}

/** An IP as the control plane compares it: IPv4-mapped IPv6 (`::ffff:10.0.0.5`) as plain IPv4, brackets off, lower case. */
export function normalHost(host: string): string {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return m ? m[1]! : h;
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const t = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
  return t === '' ? '{}' : `{${t.slice(0, 300)}}`;
}
