/**
 * The SPIFFE IDs of Trellis's own components, all in the `trellis-system`
 * namespace in the Kubernetes form (Istio's `spiffe://<td>/ns/NS/sa/SA`):
 * the one place they are spelled, for the control plane that serves as one,
 * the sidecars and CLI that expect it, and the admin allow-list.
 */
import { kubernetesSpiffeId } from './spiffe-id';

/** The namespace Trellis's own components run in. */
export const TRELLIS_NAMESPACE = 'trellis-system';

/** The control plane's SPIFFE ID in `trustDomain` (what sidecars and admin clients expect it to present). */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return kubernetesSpiffeId(trustDomain, TRELLIS_NAMESPACE, 'trellis-control-plane').toString();
}

/** The admin identity the control plane allows by default and `trellis admin credentials` issues. */
export function defaultAdminSpiffeId(trustDomain: string): string {
  return kubernetesSpiffeId(trustDomain, TRELLIS_NAMESPACE, 'trellis-admin').toString();
}

/** The injector webhook's SPIFFE ID (its serving certificate when the CA issues it). */
export function injectorSpiffeId(trustDomain: string): string {
  return kubernetesSpiffeId(trustDomain, TRELLIS_NAMESPACE, 'trellis-injector').toString();
}
