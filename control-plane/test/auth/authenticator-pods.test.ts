import { expect } from 'chai';
import { authenticate, type AuthenticatorDeps } from '../../src/auth/authenticator';
import type { JoinTokenStore } from '../../src/auth/join-token-store';
import type { AttestationStore } from '../../src/attestation/attestation-store';
import { fromKubernetesPod } from '../../src/attestation/workload-attestation';
import type { ControlPlaneError } from '../../src/errors/control-plane-error';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const NOW = Date.parse('2025-06-01T12:00:00Z');
const cert = { subjectaltname: `URI:${ID}`, valid_from: 'Jun  1 11:00:00 2025 GMT', valid_to: 'Jun  1 13:00:00 2025 GMT', serialNumber: 'AB12' };
const byPod = fromKubernetesPod(ID, { namespace: 'shop', name: 'cart-1', uid: 'u1' });
const recalls: AttestationStore = { remember: () => undefined, recall: (serial, id) => (serial === 'ab12' && id === ID ? byPod : null) };

describe('A renewal over mTLS with an SVID issued under a pod-bound token', () => {
  const deps = (pods?: AuthenticatorDeps['pods']): AuthenticatorDeps => ({ trustDomain: 'cluster.local', joinTokens: {} as JoinTokenStore, isRevoked: () => false, attestations: recalls, pods });

  it('Should keep the pod attestation while the pod exists, and refuse the SVID once the pod is gone (TRELLIS_CP_TOKEN_POD_GONE)', async () => {
    let status: 'alive' | 'gone' | 'unknown' = 'alive';
    const d = deps({ podStatus: () => status });
    expect((await authenticate(d, { peerCertificate: cert }, NOW)).attestation).to.deep.equal(byPod);
    status = 'unknown';
    expect((await authenticate(d, { peerCertificate: cert }, NOW)).attestation, 'not synced yet: the stream decides (it asks the registry again)').to.deep.equal(byPod);
    status = 'gone';
    const err = await authenticate(d, { peerCertificate: cert }, NOW).then(() => null, (e: unknown) => e);
    expect((err as ControlPlaneError).code).to.equal('TRELLIS_CP_TOKEN_POD_GONE');
  });

  it('Should attest the identity alone on a control plane that does not read pods', async () => {
    expect((await authenticate(deps(), { peerCertificate: cert }, NOW)).attestation.source).to.equal('identity-only');
  });
});
