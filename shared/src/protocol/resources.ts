/**
 * The JSON shapes of resource bodies, one per type URL, and a strict decoder
 * the client runs before handing a resource to the sidecar: a body that does
 * not match its type is a NACK with the field path, never a crash.
 */
import { TrellisError } from '../errors/trellis-error';
import { isPathNormalization, PATH_NORMALIZATIONS, type PathNormalization } from '../policy/path-normalization';
import { isKeyExchangePolicy, KEY_EXCHANGE_POLICIES, type KeyExchangePolicy } from '../tls/key-exchange';
import type { EffectiveMtlsMode } from '../policy/policy-types';
import { parsePort } from '../net/host-port';
import {
  AUTHORIZATION_POLICIES_TYPE_URL,
  ENDPOINTS_TYPE_URL,
  PEER_AUTHENTICATION_TYPE_URL,
  RENEWAL_TYPE_URL,
  REVOCATIONS_TYPE_URL,
  SVID_TYPE_URL,
  TRUST_BUNDLE_TYPE_URL,
  type TypeUrl,
} from './type-urls';

/** A signed workload certificate. The private key never travels: the sidecar kept it. */
export interface SvidResource {
  spiffeId: string;
  /** Leaf first, then intermediates (PEM). */
  chainPem: string;
  serialHex: string;
  /** ISO-8601. */
  notBefore: string;
  /** ISO-8601. */
  notAfter: string;
}

/**
 * Every trusted root; during a root rotation both old and new are present.
 * `rootsPem` are our own trust domain's roots (the only ones the control
 * plane connection trusts); `federatedRootsPem` holds the roots of each
 * trust domain we federate with, keyed by trust domain (protocol v2; absent
 * or empty: no federation).
 */
export interface TrustBundleResource {
  trustDomain: string;
  rootsPem: string[];
  federatedRootsPem?: Record<string, string[]>;
}

/** The mTLS modes a workload can be in (Istio's PeerAuthentication, UNSET resolved): the policy model's EffectiveMtlsMode. */
export const MTLS_MODES: readonly EffectiveMtlsMode[] = Object.freeze(['STRICT', 'PERMISSIVE', 'DISABLE'] as const);

/** True when `v` is one of {@link MTLS_MODES}. */
export function isMtlsMode(v: unknown): v is EffectiveMtlsMode {
  return (MTLS_MODES as readonly unknown[]).includes(v);
}

/**
 * The effective PeerAuthentication for one workload: the one model of it,
 * pushed as is and held as is (frozen) in the sidecar's state.
 */
export interface PeerAuthenticationResource {
  mode: EffectiveMtlsMode;
  /** Per-port overrides, keyed by port number (1-65535) as a string. */
  portModes: Record<string, EffectiveMtlsMode>;
  /**
   * The mesh-wide key-exchange policy for mTLS (absent: `prefer`, so a
   * control plane that predates the field leaves sidecars offering the
   * hybrid group first, never `off` by accident).
   */
  keyExchange?: KeyExchangePolicy;
}

/**
 * The AuthorizationPolicies selecting one workload, in their compiled wire
 * form (policy/authz-wire.ts, oldest first; the sidecar's decoder checks
 * every field), and the mesh-wide path normalization applied before them
 * (Istio's meshConfig.pathNormalization; absent: BASE, so a control plane
 * that predates the field never leaves a sidecar on NONE).
 */
export interface AuthorizationPoliciesResource {
  /** The version of the compiled form (AUTHZ_WIRE_VERSION); may be absent only with an empty list. */
  wireVersion?: number;
  /** Compiled policies (AuthzWirePolicy); typed loosely because the decoder, not the type, vouches for them. */
  policies: unknown[];
  pathNormalization?: PathNormalization;
}

/** Credentials that must be refused at once, before they expire. */
export interface RevocationsResource {
  /** Lower-case hex certificate serials. */
  serials: string[];
  spiffeIds: string[];
}

/** One address serving a service, and who serves it. */
export interface Endpoint {
  /** host:port */
  address: string;
  spiffeId: string;
}

/** The endpoints of one service; the resource name is the service name. */
export interface EndpointsResource {
  service: string;
  endpoints: Endpoint[];
}

/**
 * What the control plane asks of this sidecar's identity: renew with a fresh
 * key by `renewBy` (a per-sidecar jittered instant inside the re-issue
 * window) when the certificate it holds was issued before `orderedAt`; both
 * null when nothing is asked. Advisory and idempotent: a sidecar renews at
 * the earlier of `renewBy` and its own schedule, once.
 */
export interface RenewalResource {
  /** ISO-8601, or null. */
  renewBy: string | null;
  /** ISO-8601 instant of the order (re-issue or root switch), or null. */
  orderedAt: string | null;
  /** Why (`reissue`, `root-rotation`), for logs. */
  reason: string;
}

/** The body type for each type URL. */
export interface ResourceBodies {
  [SVID_TYPE_URL]: SvidResource;
  [TRUST_BUNDLE_TYPE_URL]: TrustBundleResource;
  [PEER_AUTHENTICATION_TYPE_URL]: PeerAuthenticationResource;
  [AUTHORIZATION_POLICIES_TYPE_URL]: AuthorizationPoliciesResource;
  [REVOCATIONS_TYPE_URL]: RevocationsResource;
  [ENDPOINTS_TYPE_URL]: EndpointsResource;
  [RENEWAL_TYPE_URL]: RenewalResource;
}

/** A resource body that does not have the shape its type URL promises. */
export class ProtocolError extends TrellisError {}

/** Fixed resource names for the single-resource types. */
export const SINGLETON_RESOURCE_NAME = 'default';

/**
 * Checks a PeerAuthentication body (pushed or built locally) and returns it;
 * throws ProtocolError `TRELLIS_PROTOCOL_BAD_RESOURCE` with `details.field`
 * naming the first bad field. The one rule for modes and ports.
 */
export function checkPeerAuthentication(v: unknown): PeerAuthenticationResource {
  const typeUrl = PEER_AUTHENTICATION_TYPE_URL;
  const o = obj(typeUrl, v, '');
  if (!isMtlsMode(o.mode)) throw bad(typeUrl, 'mode', `must be one of ${MTLS_MODES.join(', ')}`);
  const pm = obj(typeUrl, o.portModes ?? {}, 'portModes');
  for (const [port, mode] of Object.entries(pm)) {
    const n = parsePort(port);
    if (n === undefined || n === 0) throw bad(typeUrl, `portModes.${port}`, 'not a TCP port (1-65535)');
    if (!isMtlsMode(mode)) throw bad(typeUrl, `portModes.${port}`, `must be one of ${MTLS_MODES.join(', ')}`);
  }
  if (o.keyExchange !== undefined && !isKeyExchangePolicy(o.keyExchange)) throw bad(typeUrl, 'keyExchange', `must be one of ${KEY_EXCHANGE_POLICIES.join(', ')}`);
  return o as unknown as PeerAuthenticationResource;
}

/**
 * Parses and checks one resource body; throws ProtocolError
 * `TRELLIS_PROTOCOL_BAD_RESOURCE` naming the field when it is malformed.
 */
export function decodeResource<T extends TypeUrl>(typeUrl: T, body: Uint8Array | string): ResourceBodies[T] {
  let v: unknown;
  try {
    v = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8'));
  } catch (err) {
    throw bad(typeUrl, '', `not JSON: ${(err as Error).message}`);
  }
  const o = obj(typeUrl, v, '');
  switch (typeUrl) {
    case SVID_TYPE_URL:
      for (const f of ['spiffeId', 'chainPem', 'serialHex', 'notBefore', 'notAfter']) str(typeUrl, o, f);
      if (Number.isNaN(Date.parse(o.notAfter as string))) throw bad(typeUrl, 'notAfter', 'not a date');
      break;
    case TRUST_BUNDLE_TYPE_URL:
      str(typeUrl, o, 'trustDomain');
      strArray(typeUrl, o, 'rootsPem');
      if ((o.rootsPem as string[]).length === 0) throw bad(typeUrl, 'rootsPem', 'empty: a bundle needs at least one root');
      if (o.federatedRootsPem !== undefined) {
        const fed = obj(typeUrl, o.federatedRootsPem, 'federatedRootsPem');
        for (const td of Object.keys(fed)) {
          if (td === o.trustDomain) throw bad(typeUrl, `federatedRootsPem.${td}`, 'is our own trust domain');
          strArray(typeUrl, fed, td);
          if ((fed[td] as string[]).length === 0) throw bad(typeUrl, `federatedRootsPem.${td}`, 'empty: a federated bundle needs at least one root');
        }
      }
      break;
    case PEER_AUTHENTICATION_TYPE_URL:
      obj(typeUrl, o.portModes, 'portModes');
      checkPeerAuthentication(o);
      break;
    case AUTHORIZATION_POLICIES_TYPE_URL:
      if (!Array.isArray(o.policies)) throw bad(typeUrl, 'policies', 'must be an array');
      if (o.pathNormalization !== undefined && !isPathNormalization(o.pathNormalization)) throw bad(typeUrl, 'pathNormalization', `must be one of ${PATH_NORMALIZATIONS.join(', ')}`);
      break;
    case REVOCATIONS_TYPE_URL:
      strArray(typeUrl, o, 'serials');
      strArray(typeUrl, o, 'spiffeIds');
      break;
    case ENDPOINTS_TYPE_URL: {
      str(typeUrl, o, 'service');
      if (!Array.isArray(o.endpoints)) throw bad(typeUrl, 'endpoints', 'must be an array');
      (o.endpoints as unknown[]).forEach((e, i) => {
        const eo = obj(typeUrl, e, `endpoints[${i}]`);
        if (typeof eo.address !== 'string') throw bad(typeUrl, `endpoints[${i}].address`, 'must be a string');
        if (typeof eo.spiffeId !== 'string') throw bad(typeUrl, `endpoints[${i}].spiffeId`, 'must be a string');
      });
      break;
    }
    case RENEWAL_TYPE_URL:
      for (const f of ['renewBy', 'orderedAt']) {
        if (o[f] !== null && (typeof o[f] !== 'string' || Number.isNaN(Date.parse(o[f] as string)))) throw bad(typeUrl, f, 'must be an ISO-8601 date or null');
      }
      if ((o.renewBy === null) !== (o.orderedAt === null)) throw bad(typeUrl, 'renewBy', 'renewBy and orderedAt are both set or both null');
      if (typeof o.reason !== 'string') throw bad(typeUrl, 'reason', 'must be a string');
      break;
    default:
      throw bad(typeUrl, '', 'unknown type URL');
  }
  return Object.freeze(o) as unknown as ResourceBodies[T];
}

/** Serialises a resource body for the wire. */
export function encodeResource(body: unknown): Buffer {
  return Buffer.from(JSON.stringify(body), 'utf8');
}

function bad(typeUrl: string, field: string, reason: string): ProtocolError {
  return new ProtocolError('TRELLIS_PROTOCOL_BAD_RESOURCE', `${typeUrl}${field ? ' field ' + field : ''}: ${reason}`, { typeUrl, field });
}

function obj(typeUrl: string, v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(typeUrl, field, 'must be an object');
  return v as Record<string, unknown>;
}

function str(typeUrl: string, o: Record<string, unknown>, f: string): void {
  if (typeof o[f] !== 'string' || o[f] === '') throw bad(typeUrl, f, 'must be a non-empty string');
}

function strArray(typeUrl: string, o: Record<string, unknown>, f: string): void {
  const a = o[f];
  if (!Array.isArray(a) || a.some((x) => typeof x !== 'string')) throw bad(typeUrl, f, 'must be an array of strings');
}
