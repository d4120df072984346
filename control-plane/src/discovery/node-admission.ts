/**
 * Admitting a stream's node: what the sidecar says of itself (its node
 * message) judged against what is attested for the identity that opened the
 * stream (attestation/node-claims.ts), and, for a pod-attested stream,
 * against that pod as the API server has it. Claims the pod overrides are
 * counted and audited; a refusal is counted, audited and thrown with its
 * code. Fails closed: a pod the directory cannot answer for yet, or one
 * that is gone, refuses the node.
 */
import type { Logger, NodeMessage } from '@trellis/shared';
import type { AuthenticatedPeer } from '../auth/authenticated-peer';
import { judgeNode, type SessionNode } from '../attestation/node-claims';
import type { PodDirectory, PodFacts } from '../registry/pod-facts';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import type { ControlPlaneMetrics } from '../observability/control-plane-metrics';

/** What admitting a node needs. */
export interface NodeAdmissionDeps {
  readonly metrics: Pick<ControlPlaneMetrics, 'attestationIgnored' | 'attestationRefusals'>;
  readonly logger: Logger;
  nowMs(): number;
  /** The API server's pods, when the control plane reads them. */
  readonly pods?: PodDirectory;
}

/** The stream asking: its id (for log lines) and the peer's IP as the server saw it. */
export interface AdmittingStream {
  readonly id: number;
  readonly peerHost: string;
}

/** The node this stream will be served as; throws a ControlPlaneError (counted and audited) when it is refused. */
export function admitNode(deps: NodeAdmissionDeps, stream: AdmittingStream, claimed: Partial<NodeMessage> | null | undefined, peer: AuthenticatedPeer): SessionNode {
  const pod = attestedPod(deps, peer);
  const v = judgeNode(claimed, peer.attestation, stream.peerHost, pod);
  if (v.ok) {
    for (const reason of v.ignored) deps.metrics.attestationIgnored.inc({ reason });
    if (v.ignored.length > 0) {
      const n: Partial<NodeMessage> = claimed ?? {};
      deps.logger.warn('node claim ignored: the pod on the API server decides', {
        stream: stream.id,
        event: 'audit',
        spiffeId: peer.spiffeId,
        pod: pod ? `${pod.namespace}/${pod.name}` : undefined,
        reasons: v.ignored,
        claimed: { service: (n.service ?? '').slice(0, 253), labels: Object.keys(n.labels ?? {}).length, ports: (n.inbound_ports ?? []).slice(0, 16) },
        podFacts: pod ? { services: pod.services, labels: pod.labels, ports: pod.inboundPorts } : undefined,
        peer: stream.peerHost,
      });
    }
    return v.node;
  }
  const err = new ControlPlaneError(v.code, v.message, v.reason ? { reason: v.reason } : {});
  if (v.code === ControlPlaneErrorCode.ATTESTATION_MISMATCH || v.code === ControlPlaneErrorCode.IDENTITY_MISMATCH) {
    if (v.reason) deps.metrics.attestationRefusals.inc({ reason: v.reason });
    deps.logger.warn('node claim refused', {
      stream: stream.id,
      event: 'audit',
      spiffeId: peer.spiffeId,
      authMethod: peer.method,
      attestedBy: peer.attestation.source,
      reason: v.reason ?? 'identity',
      code: v.code,
      detail: v.message.slice(0, 1000),
      peer: stream.peerHost,
    });
  }
  throw err;
}

/**
 * The facts of the pod the stream is attested by, from the API server; null
 * when it is not pod-attested or this control plane does not read pods
 * (then it counts as the identity alone). A pod the directory cannot
 * answer for yet ends the stream with a retry hint; one that is gone ends
 * it for good (fails closed).
 */
function attestedPod(deps: NodeAdmissionDeps, peer: AuthenticatedPeer): PodFacts | null {
  const bound = peer.attestation.pod;
  if (!bound || !deps.pods) return null;
  const facts = deps.pods.lookup(bound, deps.nowMs());
  if (facts === 'unknown') {
    throw new ControlPlaneError(ControlPlaneErrorCode.REGISTRY_NOT_SYNCED, 'the control plane has not read the pods from the Kubernetes API server yet; retry', { retryAfterMs: 2000 });
  }
  if (facts === 'gone') throw new ControlPlaneError(ControlPlaneErrorCode.TOKEN_POD_GONE, `pod ${bound.namespace}/${bound.name} no longer exists`);
  return facts;
}
