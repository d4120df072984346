/**
 * What a DiscoveryClient is given and what it tells its listeners: the
 * client's contract with the sidecar that runs it.
 */
import type { BackoffOptions, KeyExchangePolicy, Logger } from '@trellis/shared';
import type { DiscoveryNode } from './resource-sync';
import type { ClientCredentials } from './stream-credentials';

/** Options of a DiscoveryClient. */
export interface DiscoveryClientOptions {
  /** host:port of every control-plane replica; tried in turn. */
  addresses: string[];
  /** Roots to trust before the first bundle arrives (PEM). */
  bootstrapBundlePem: string;
  /** The bearer token for first contact, re-read at each use. */
  getToken(): Promise<string>;
  /** The current SVID and key, or null before the first one. */
  getCredentials?(): ClientCredentials | null;
  node: DiscoveryNode;
  /** `spiffe://<td>/ns/trellis-system/sa/trellis-control-plane`. */
  controlPlaneSpiffeId: string;
  logger: Logger;
  clock?: () => number;
  random?: () => number;
  backoff?: BackoffOptions;
  /** Endpoints wanted (service names); empty = all. */
  endpointNames?: string[];
  /** The key-exchange policy to connect with (the pushed one; prefer until there is one). */
  getKeyExchange?(): KeyExchangePolicy;
}

/** Why no credential is left: the control plane's refusal of our join token. */
export interface CredentialsExhaustedInfo {
  serverCode: string;
  message: string;
}

/** How a stream ended. */
export interface StreamEndInfo {
  grpcCode: number;
  serverCode: string | null;
  message: string;
  retryAfterMs: number;
}
