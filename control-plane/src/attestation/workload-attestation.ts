/**
 * What an attested source vouches for about one workload: its identity, the
 * namespace that identity names, and the service, labels and inbound ports it
 * is known by. The control plane publishes this, never what a sidecar
 * announces; a node may only repeat it or say less (attestation/node-claims.ts).
 *
 * Sources today: a join token's signed claims (join-token.ts), carried
 * forward to every SVID issued under it (attestation-store.ts); a Kubernetes
 * ServiceAccount token or a certificate with no record attests the identity
 * alone. Service and label attestation from the Kubernetes API server comes
 * with the Kubernetes integration, behind the same AttestationStore interface.
 */
import { parseKubernetesSpiffeId } from '@trellis/shared';
import type { WorkloadMetadata } from './workload-metadata';

/** Who vouched for the metadata. */
export type AttestationSource = 'join-token' | 'identity-only';

/** One workload's attested facts, frozen. */
export interface WorkloadAttestation {
  readonly spiffeId: string;
  readonly source: AttestationSource;
  /** The namespace the SPIFFE ID names (`/ns/NS/sa/SA`), or '' for IDs of any other form. */
  readonly namespace: string;
  /** Service, labels and inbound ports; all empty for `identity-only`. */
  readonly workload: WorkloadMetadata;
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

/** True when the attestation vouches for anything beyond the identity. */
export function attestsMetadata(a: WorkloadAttestation): boolean {
  return a.workload.service !== '' || a.workload.inboundPorts.length > 0 || Object.keys(a.workload.labels).length > 0;
}

/** How an attestation is named in refusals, so an operator knows where to fix it. */
export function describeSource(a: WorkloadAttestation): string {
  return a.source === 'join-token'
    ? 'its join token (trellis token create --service/--labels/--ports)'
    : 'its credential, which attests the identity only (Kubernetes service and label attestation comes with the API-server integration)';
}
