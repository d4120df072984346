/**
 * What an attested source vouches for about one workload: its identity, the
 * namespace that identity names, and the service, labels and inbound ports it
 * is known by. The control plane publishes this, never what a sidecar
 * announces; a node may only repeat it or say less (attestation/node-claims.ts).
 *
 * Sources: a join token's signed claims (join-token.ts); a Kubernetes
 * ServiceAccount token bound to a pod, when the control plane reads the API
 * server (`kubernetes-pod`: the credential attests *which pod*; that pod's
 * labels, IP and services are then read live from the API server, see
 * registry/pod-facts.ts); either is carried forward to every SVID issued
 * under it (attestation-store.ts). A token bound to no pod, a Kubernetes
 * token without the API-server registry, and a certificate with no record
 * attest the identity alone.
 */
import { parseKubernetesSpiffeId } from '@trellis/shared';
import type { WorkloadMetadata } from './workload-metadata';

/** Who vouched for the metadata. */
export type AttestationSource = 'join-token' | 'kubernetes-pod' | 'identity-only';

/** The pod a credential is bound to (a projected token's `kubernetes.io.pod` claim). */
export interface AttestedPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

/** One workload's attested facts, frozen. */
export interface WorkloadAttestation {
  readonly spiffeId: string;
  readonly source: AttestationSource;
  /** The namespace the SPIFFE ID names (`/ns/NS/sa/SA`), or '' for IDs of any other form. */
  readonly namespace: string;
  /** Service, labels and inbound ports; all empty for `identity-only` and `kubernetes-pod` (whose facts are the pod's, read live). */
  readonly workload: WorkloadMetadata;
  /** Set for `kubernetes-pod`: the pod whose facts the API server gives. */
  readonly pod?: AttestedPod;
}

const NOTHING: WorkloadMetadata = Object.freeze({ service: '', labels: Object.freeze({}), inboundPorts: Object.freeze([]) });

/** The namespace an identity names, or '' when its ID is not `/ns/NS/sa/SA`. */
export function namespaceOf(spiffeId: string): string {
  return parseKubernetesSpiffeId(spiffeId)?.namespace ?? '';
}

/** An attestation of the identity alone: no service, no labels, no ports (fail closed). */
export function identityOnly(spiffeId: string): WorkloadAttestation {
  return Object.freeze({ spiffeId, source: 'identity-only' as const, namespace: namespaceOf(spiffeId), workload: NOTHING });
}

/** What a verified join token attests for `spiffeId`. */
export function fromJoinToken(spiffeId: string, workload: WorkloadMetadata): WorkloadAttestation {
  return Object.freeze({
    spiffeId,
    source: 'join-token' as const,
    namespace: namespaceOf(spiffeId),
    workload: Object.freeze({ service: workload.service, labels: Object.freeze({ ...workload.labels }), inboundPorts: Object.freeze([...workload.inboundPorts]) }),
  });
}

/** What a projected ServiceAccount token bound to `pod` attests for `spiffeId`: that pod, whose facts the API server gives. */
export function fromKubernetesPod(spiffeId: string, pod: AttestedPod): WorkloadAttestation {
  return Object.freeze({
    spiffeId,
    source: 'kubernetes-pod' as const,
    namespace: namespaceOf(spiffeId),
    workload: NOTHING,
    pod: Object.freeze({ namespace: pod.namespace, name: pod.name, uid: pod.uid }),
  });
}

/** True when the attestation vouches for anything beyond the identity (metadata, or a pod). */
export function attestsMetadata(a: WorkloadAttestation): boolean {
  return a.pod !== undefined || a.workload.service !== '' || a.workload.inboundPorts.length > 0 || Object.keys(a.workload.labels).length > 0;
}

/** How an attestation is named in refusals, so an operator knows where to fix it. */
export function describeSource(a: WorkloadAttestation): string {
  switch (a.source) {
    case 'join-token':
      return 'its join token (trellis token create --service/--labels/--ports)';
    case 'kubernetes-pod':
      return `its pod ${a.pod?.namespace}/${a.pod?.name} on the Kubernetes API server`;
    default:
      return 'its credential, which attests the identity only (a Kubernetes token attests its pod only when the token is bound to one and the control plane reads the API server: --k8s-registry)';
  }
}
