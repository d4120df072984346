/**
 * The sidecar's hot state behind one atomic reference.
 *
 * Everything the data plane decides with (our credentials, the trust bundle,
 * peer-authentication modes, authorization policies, revocations, endpoints)
 * lives in one frozen snapshot. An update validates the parts it replaces and
 * then swaps the whole snapshot; a part that fails validation throws and the
 * previous snapshot stays in force. Handshakes read `current()` once, so a
 * connection never sees half an update.
 */
import { X509Certificate, createHash, createPublicKey } from 'node:crypto';
import { checkPeerAuthentication, createTrustBundle, type TrustBundle, DEFAULT_KEY_EXCHANGE, DEFAULT_PATH_NORMALIZATION, type EffectiveMtlsMode, type PeerAuthenticationResource, isSpiffeId, normaliseSerial, pemToDer, certificatePems, parseHostPort, isPathNormalization, parseCertificate, parseTrustDomain, PATH_NORMALIZATIONS, validateLeafSvid, type CertificateFacts, type PathNormalization } from '@trellis/shared';
import { SidecarError } from '../errors';
import { leafFacts } from '../identity/leaf-facts';
import { splitWorkloadSpiffeId } from '../identity/peer-verifier';

/** Our SVID: the private key stays in this process and is never logged or dumped. */
export interface Credentials {
  /** PKCS#8 PEM of the private key, in memory only. */
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly chainPem: string;
  readonly leafDer: Buffer;
  readonly serialHex: string;
  readonly spiffeId: string;
  readonly trustDomain: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * The roots we trust; during a root rotation it holds both. With federation
 * `rootsPem` holds every root the TLS layer may anchor on (ours first, then
 * each federated trust domain's), and `byTrustDomain` says which roots belong
 * to which trust domain: a peer must chain to a root of its OWN trust domain.
 */
export interface TrustAnchors {
  readonly rootsPem: readonly string[];
  /** SHA-256 fingerprints of the roots, lower-case hex, same order. */
  readonly fingerprints: readonly string[];
  /** Our trust domain, when the bundle names it (bundles from the control plane do). */
  readonly trustDomain?: string;
  /** The trust bundle of each trust domain (ours and each federated one; the shared model); absent for a bootstrap bundle. */
  readonly byTrustDomain?: ReadonlyMap<string, TrustBundle>;
}

/**
 * The effective PeerAuthentication for this workload: the pushed resource
 * itself (shared model), frozen. `keyExchange` absent in an update means
 * prefer, and a snapshot always holds one.
 */
export type PeerAuthentication = Readonly<Omit<PeerAuthenticationResource, 'portModes'>> & { readonly portModes: Readonly<Record<string, EffectiveMtlsMode>> };

/** The AuthorizationPolicies that apply to this workload, as plain JSON data, and how request paths are normalized before them. */
export interface AuthorizationState {
  readonly policies: readonly object[];
  /** The mesh-wide path normalization (Istio's names); absent in an update means BASE, and a snapshot always holds one. */
  readonly pathNormalization?: PathNormalization;
}

/** Revoked serials (normalised hex) and SPIFFE IDs. */
export interface RevocationList {
  readonly serials: ReadonlySet<string>;
  readonly spiffeIds: ReadonlySet<string>;
}

/** One upstream service: where it runs and which identities may answer for it. */
export interface ServiceEndpoints {
  /** `host:port` addresses. */
  readonly addresses: readonly string[];
  /** The SPIFFE IDs its servers may present. */
  readonly spiffeIds: readonly string[];
}

/** The immutable view every decision reads. */
export interface SidecarSnapshot {
  readonly version: number;
  readonly credentials?: Credentials;
  readonly bundle?: TrustAnchors;
  readonly peerAuth?: PeerAuthentication;
  readonly authz?: AuthorizationState;
  readonly revocations: RevocationList;
  /** Keyed by service name (`name`, `name.ns` or `name:port`, as the control plane sends it). */
  readonly endpoints: Readonly<Record<string, ServiceEndpoints>>;
}

/** The parts an update may replace; each is validated and replaced whole. */
export interface SnapshotUpdate {
  credentials?: Credentials;
  bundle?: TrustAnchors;
  peerAuth?: PeerAuthentication;
  authz?: AuthorizationState;
  revocations?: RevocationList;
  endpoints?: Record<string, ServiceEndpoints>;
}

/** Which parts changed in an update, for listeners. */
export type SnapshotPart = keyof SnapshotUpdate;

const EMPTY_REVOCATIONS: RevocationList = Object.freeze({ serials: new Set<string>(), spiffeIds: new Set<string>() });

/** The atomic holder. One per sidecar, passed in through `deps`. */
export class SidecarState {
  private snapshot: SidecarSnapshot = Object.freeze({ version: 0, revocations: EMPTY_REVOCATIONS, endpoints: Object.freeze({}) });
  private readonly listeners: Array<(s: SidecarSnapshot, changed: readonly SnapshotPart[]) => void> = [];

  /** The snapshot in force now. */
  current(): SidecarSnapshot {
    return this.snapshot;
  }

  /**
   * Validates the given parts and swaps in a new snapshot. Throws a
   * SidecarError (and keeps the old snapshot) when any part is invalid.
   */
  update(update: SnapshotUpdate): SidecarSnapshot {
    const next: { -readonly [K in keyof SidecarSnapshot]: SidecarSnapshot[K] } = { ...this.snapshot, version: this.snapshot.version + 1 };
    const changed: SnapshotPart[] = [];
    if (update.credentials !== undefined) {
      next.credentials = checkCredentials(update.credentials);
      changed.push('credentials');
    }
    if (update.bundle !== undefined) {
      next.bundle = checkBundle(update.bundle);
      changed.push('bundle');
    }
    if (update.peerAuth !== undefined) {
      next.peerAuth = checkPeerAuth(update.peerAuth);
      changed.push('peerAuth');
    }
    if (update.authz !== undefined) {
      if (!Array.isArray(update.authz.policies) || update.authz.policies.some((p) => typeof p !== 'object' || p === null)) {
        throw new SidecarError('TRELLIS_SIDECAR_BAD_POLICY', 'authorization policies must be a list of objects', { field: 'authz.policies' });
      }
      const pathNormalization = update.authz.pathNormalization ?? DEFAULT_PATH_NORMALIZATION;
      if (!isPathNormalization(pathNormalization)) {
        throw new SidecarError('TRELLIS_SIDECAR_BAD_POLICY', `path normalization must be one of ${PATH_NORMALIZATIONS.join(', ')}`, { field: 'authz.pathNormalization' });
      }
      next.authz = Object.freeze({ policies: Object.freeze([...update.authz.policies]), pathNormalization });
      changed.push('authz');
    }
    if (update.revocations !== undefined) {
      next.revocations = checkRevocations(update.revocations);
      changed.push('revocations');
    }
    if (update.endpoints !== undefined) {
      next.endpoints = checkEndpoints(update.endpoints);
      changed.push('endpoints');
    }
    if (changed.length === 0) return this.snapshot;
    this.snapshot = Object.freeze(next);
    for (const l of this.listeners) l(this.snapshot, changed);
    return this.snapshot;
  }

  /** Calls `fn` after every successful swap with the parts that changed. */
  onChange(fn: (s: SidecarSnapshot, changed: readonly SnapshotPart[]) => void): void {
    this.listeners.push(fn);
  }
}

/** Why the sidecar is (not) ready: a valid SVID, a bundle and a policy. Pure. */
export function readiness(s: SidecarSnapshot, now: Date): { ready: boolean; reason: string } {
  if (!s.credentials) return { ready: false, reason: 'no SVID yet' };
  if (now.getTime() >= s.credentials.notAfter.getTime()) return { ready: false, reason: `SVID expired at ${s.credentials.notAfter.toISOString()}` };
  if (now.getTime() < s.credentials.notBefore.getTime()) return { ready: false, reason: 'SVID not yet valid' };
  if (!s.bundle) return { ready: false, reason: 'no trust bundle yet' };
  if (!s.peerAuth || !s.authz) return { ready: false, reason: 'no policy yet' };
  return { ready: true, reason: 'ready' };
}

/**
 * Builds Credentials from a private key and the chain issued for it, checking
 * that the leaf is an SVID and belongs to this key.
 */
export function makeCredentials(keyPem: string, chainPem: string): Credentials {
  const certs = certificatePemsOf(chainPem, 'TRELLIS_SIDECAR_BAD_CREDENTIALS', 'chain');
  if (certs.length === 0) throw new SidecarError('TRELLIS_SIDECAR_BAD_CREDENTIALS', 'the certificate chain holds no PEM certificate', { field: 'chain' });
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certs[0]!);
  } catch (err) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CREDENTIALS', `the leaf certificate does not parse: ${(err as Error).message}`, { field: 'chain[0]' });
  }
  let keyMatches = false;
  try {
    const ours = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    keyMatches = ours.equals(leaf.publicKey.export({ type: 'spki', format: 'der' }));
  } catch (err) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CREDENTIALS', `the private key does not parse: ${(err as Error).message}`, { field: 'key' });
  }
  if (!keyMatches) throw new SidecarError('TRELLIS_SIDECAR_KEY_MISMATCH', 'the leaf certificate was not issued for our private key', { field: 'chain[0]' });
  const facts = leafFacts(leaf);
  const verdict = validateLeafSvid(facts.facts);
  if (!verdict.ok) throw new SidecarError('TRELLIS_SIDECAR_BAD_CREDENTIALS', `our leaf is not an X.509-SVID: ${verdict.reason}`, { field: 'chain[0]', cause: verdict.code });
  const id = { trustDomain: verdict.spiffeId.trustDomain };
  return Object.freeze({
    keyPem,
    chainPem: certs.join(''),
    leafDer: Buffer.from(leaf.raw),
    serialHex: facts.serialHex,
    spiffeId: facts.uris[0]!,
    trustDomain: id.trustDomain,
    notBefore: facts.notBefore,
    notAfter: facts.notAfter,
  });
}

/** Builds a TrustAnchors from PEM roots (one string with several blocks, or a list). */
export function makeTrustBundle(roots: string | readonly string[]): TrustAnchors {
  const pems = (typeof roots === 'string' ? [roots] : roots).flatMap((r, i) => certificatePemsOf(r, 'TRELLIS_SIDECAR_BAD_BUNDLE', `bundle.roots[${i}]`));
  return checkBundle({ rootsPem: pems, fingerprints: [] });
}

/**
 * Builds a TrustAnchors from our trust domain's roots and the roots of each
 * trust domain we federate with. Throws TRELLIS_SIDECAR_BAD_BUNDLE naming
 * the trust domain and root when one does not parse or is not a CA, and when
 * a federated entry is empty or names our own trust domain.
 */
export function makeFederatedTrustBundle(trustDomain: string, ownRoots: readonly string[], federated: Readonly<Record<string, readonly string[]>> = {}): TrustAnchors {
  const own = checkBundle({ rootsPem: ownRoots.flatMap((r, i) => certificatePemsOf(r, 'TRELLIS_SIDECAR_BAD_BUNDLE', `bundle.${trustDomain}[${i}]`)), fingerprints: [] });
  const byTd = new Map<string, TrustBundle>([[trustDomain, createTrustBundle(trustDomain, own.rootsPem.map((p, i) => parseRoot(p, `bundle.${trustDomain}[${i}]`)))]]);
  const all = [...own.rootsPem];
  for (const [td, roots] of Object.entries(federated)) {
    const field = `bundle.federated.${td}`;
    try {
      parseTrustDomain(td);
    } catch (err) {
      throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `federated trust domain "${td}" is not a trust domain: ${(err as Error).message}`, { field });
    }
    if (td === trustDomain) throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `federated trust domain "${td}" is our own`, { field });
    const pems = roots.flatMap((r, i) => certificatePemsOf(r, 'TRELLIS_SIDECAR_BAD_BUNDLE', `${field}[${i}]`));
    if (pems.length === 0) throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `the federated bundle of ${td} holds no root certificate`, { field });
    checkBundle({ rootsPem: pems, fingerprints: [] }, field);
    byTd.set(td, createTrustBundle(td, pems.map((p, i) => parseRoot(p, `${field}[${i}]`))));
    all.push(...pems);
  }
  const checked = checkBundle({ rootsPem: all, fingerprints: [] });
  return Object.freeze({ ...checked, trustDomain, byTrustDomain: byTd });
}

function parseRoot(pem: string, field: string): CertificateFacts {
  try {
    const [der] = pemToDer(pem, 'CERTIFICATE', field);
    if (!der) throw new Error('no CERTIFICATE block');
    return parseCertificate(der);
  } catch (err) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `${field} does not parse: ${(err as Error).message}`, { field });
  }
}

/** Builds a RevocationList from serials and SPIFFE IDs. */
export function makeRevocations(serials: readonly string[] = [], spiffeIds: readonly string[] = []): RevocationList {
  return checkRevocations({ serials: new Set(serials), spiffeIds: new Set(spiffeIds) });
}

/**
 * The CERTIFICATE blocks of PEM text, one PEM each (the shared PEM reader);
 * text that is not PEM, or a broken block, is `code` naming `field`.
 */
function certificatePemsOf(text: string, code: 'TRELLIS_SIDECAR_BAD_BUNDLE' | 'TRELLIS_SIDECAR_BAD_CREDENTIALS', field: string): string[] {
  try {
    return certificatePems(text, field);
  } catch (err) {
    throw new SidecarError(code, `${field}: ${(err as Error).message}`, { field });
  }
}

function checkCredentials(c: Credentials): Credentials {
  if (!c || typeof c.keyPem !== 'string' || !Buffer.isBuffer(c.leafDer)) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CREDENTIALS', 'credentials must come from makeCredentials()', { field: 'credentials' });
  }
  return c;
}

function checkBundle(b: TrustAnchors, where = 'bundle.roots'): TrustAnchors {
  if (!b || !Array.isArray(b.rootsPem) || b.rootsPem.length === 0) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', 'the trust bundle holds no root certificate', { field: where });
  }
  const fingerprints: string[] = [];
  b.rootsPem.forEach((pem, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `bundle root ${i} does not parse: ${(err as Error).message}`, { field: `${where}[${i}]` });
    }
    if (!cert.ca) throw new SidecarError('TRELLIS_SIDECAR_BAD_BUNDLE', `bundle root ${i} is not a CA certificate`, { field: `${where}[${i}]` });
    fingerprints.push(createHash('sha256').update(cert.raw).digest('hex'));
  });
  return Object.freeze({
    rootsPem: Object.freeze([...b.rootsPem]),
    fingerprints: Object.freeze(fingerprints),
    ...(b.trustDomain !== undefined ? { trustDomain: b.trustDomain } : {}),
    ...(b.byTrustDomain !== undefined ? { byTrustDomain: b.byTrustDomain } : {}),
  });
}

function checkPeerAuth(p: PeerAuthentication): PeerAuthentication {
  let body: PeerAuthenticationResource;
  try {
    body = checkPeerAuthentication(p);
  } catch (err) {
    const field = (err as { details?: { field?: string } }).details?.field;
    throw new SidecarError('TRELLIS_SIDECAR_BAD_PEER_AUTH', `peer authentication: ${(err as Error).message}`, { field: `peerAuth${field ? '.' + field : ''}` });
  }
  return Object.freeze({ mode: body.mode, portModes: Object.freeze({ ...body.portModes }), keyExchange: body.keyExchange ?? DEFAULT_KEY_EXCHANGE });
}

function checkRevocations(r: RevocationList): RevocationList {
  if (!r || !(r.serials instanceof Set) || !(r.spiffeIds instanceof Set)) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_REVOCATIONS', 'revocations must hold sets of serials and SPIFFE IDs', { field: 'revocations' });
  }
  const serials = new Set<string>();
  for (const s of r.serials) {
    try {
      serials.add(normaliseSerial(s));
    } catch {
      throw new SidecarError('TRELLIS_SIDECAR_BAD_REVOCATIONS', `revoked serial "${String(s)}" is not hex`, { field: 'revocations.serials' });
    }
  }
  for (const id of r.spiffeIds) {
    if (!isSpiffeId(id)) {
      throw new SidecarError('TRELLIS_SIDECAR_BAD_REVOCATIONS', `revoked identity "${String(id)}" is not a SPIFFE ID`, { field: 'revocations.spiffeIds' });
    }
  }
  return Object.freeze({ serials, spiffeIds: new Set(r.spiffeIds) });
}

function checkEndpoints(e: Record<string, ServiceEndpoints>): Readonly<Record<string, ServiceEndpoints>> {
  if (!e || typeof e !== 'object') throw new SidecarError('TRELLIS_SIDECAR_BAD_ENDPOINTS', 'endpoints must be an object keyed by service', { field: 'endpoints' });
  const out: Record<string, ServiceEndpoints> = {};
  for (const [name, v] of Object.entries(e)) {
    if (!v || !Array.isArray(v.addresses) || !Array.isArray(v.spiffeIds)) {
      throw new SidecarError('TRELLIS_SIDECAR_BAD_ENDPOINTS', `service "${name}" needs addresses and spiffeIds lists`, { field: `endpoints.${name}` });
    }
    v.addresses.forEach((a, i) => {
      if (typeof a !== 'string' || typeof parseHostPort(a) === 'string') {
        throw new SidecarError('TRELLIS_SIDECAR_BAD_ENDPOINTS', `address "${String(a)}" is not host:port`, { field: `endpoints.${name}.addresses[${i}]` });
      }
    });
    v.spiffeIds.forEach((id, i) => {
      if (typeof id !== 'string' || !splitWorkloadSpiffeId(id)) {
        throw new SidecarError('TRELLIS_SIDECAR_BAD_ENDPOINTS', `"${String(id)}" is not a workload SPIFFE ID`, { field: `endpoints.${name}.spiffeIds[${i}]` });
      }
    });
    out[name] = Object.freeze({ addresses: Object.freeze([...v.addresses]), spiffeIds: Object.freeze([...v.spiffeIds]) });
  }
  return Object.freeze(out);
}
