/**
 * Adapter from the discovery stream to the SidecarState: each resource type
 * pushed by the control plane is converted and validated into its state
 * part. A handler that throws makes the client NACK and leaves the previous
 * part in force (SidecarState swaps whole snapshots only).
 */
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  DEFAULT_KEY_EXCHANGE,
  DEFAULT_PATH_NORMALIZATION,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  type Logger,
  type ResourceBodies,
  type TypeUrl,
} from '@trellis/shared';
import { policiesFromWire } from '../policy/authorizer';
import { makeFederatedTrustBundle, makeRevocations, type ServiceEndpoints, type SidecarState } from '../state/sidecar-state';

/** The part of the discovery client this adapter uses. */
export interface DiscoverySource {
  on<T extends TypeUrl>(typeUrl: T, handler: (resources: ReadonlyArray<{ name: string; body: ResourceBodies[T] }>, version: string) => void | Promise<void>): unknown;
  onConnectionChange(listener: (connected: boolean) => void): unknown;
}

/** Registers one handler per resource type, feeding `state`. */
export function wireDiscovery(
  client: DiscoverySource,
  state: SidecarState,
  deps: { logger: Logger; onConnectionChange?: (connected: boolean) => void; /** True once the sidecar is stopping: its own goodbye is no loss to warn of. */ stopping?: () => boolean },
): void {
  const { logger } = deps;
  client.on(TRUST_BUNDLE_TYPE_URL, (resources, version) => {
    const body = single(resources, 'trust bundle');
    state.update({ bundle: makeFederatedTrustBundle(body.trustDomain, body.rootsPem, body.federatedRootsPem ?? {}) });
    logger.info('trust bundle applied', { version, roots: body.rootsPem.length, federatedTrustDomains: Object.keys(body.federatedRootsPem ?? {}), fingerprints: state.current().bundle?.fingerprints });
  });
  client.on(PEER_AUTHENTICATION_TYPE_URL, (resources, version) => {
    const body = single(resources, 'peer authentication');
    const portModes = body.portModes ?? {};
    // A control plane that predates the field sends none: prefer, never off by accident.
    const keyExchange = body.keyExchange ?? DEFAULT_KEY_EXCHANGE;
    state.update({ peerAuth: { mode: body.mode, portModes, keyExchange } });
    logger.info('peer authentication applied', { version, mode: body.mode, portModes, keyExchange });
  });
  client.on(AUTHORIZATION_POLICIES_TYPE_URL, (resources, version) => {
    const body = single(resources, 'authorization policies');
    const policies = policiesFromWire(body);
    // A control plane that predates the field sends none: BASE, never NONE by accident.
    const pathNormalization = body.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
    state.update({ authz: { policies, pathNormalization } });
    logger.info('authorization policies applied', { version, count: policies.length, pathNormalization });
  });
  client.on(REVOCATIONS_TYPE_URL, (resources, version) => {
    const body = single(resources, 'revocations');
    state.update({ revocations: makeRevocations(body.serials, body.spiffeIds) });
    logger.info('revocations applied', { version, serials: body.serials.length, spiffeIds: body.spiffeIds.length });
  });
  client.on(ENDPOINTS_TYPE_URL, (resources, version) => {
    const endpoints: Record<string, ServiceEndpoints> = {};
    for (const r of resources) {
      endpoints[r.body.service] = { addresses: r.body.endpoints.map((e) => e.address), spiffeIds: [...new Set(r.body.endpoints.map((e) => e.spiffeId))] };
    }
    state.update({ endpoints });
    logger.info('endpoints applied', { version, services: Object.keys(endpoints) });
  });
  client.onConnectionChange((connected) => {
    deps.onConnectionChange?.(connected);
    if (connected) logger.info('control plane connected');
    else if (deps.stopping?.()) logger.info('control plane stream closed: the sidecar is stopping');
    else logger.warn('control plane disconnected; serving with the current certificate, bundle and policy');
  });
}

function single<T>(resources: ReadonlyArray<{ name: string; body: T }>, what: string): T {
  if (resources.length !== 1) throw new Error(`expected exactly one ${what} resource, got ${resources.length}`);
  return resources[0]!.body;
}
