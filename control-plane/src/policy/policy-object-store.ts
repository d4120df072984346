/**
 * Policies that live as API objects (PeerAuthentication and
 * AuthorizationPolicy custom resources of `security.trellis.dev/v1` and
 * `security.istio.io`), judged one object at a time with the validator
 * `trellis validate` and the admission webhook use (`parsePolicyObject`), so
 * an object is refused for exactly what a file would be refused for, with
 * the same field path, reason and code, its `Kind namespace/name` standing
 * in for the file name. No Kubernetes client here: an adapter
 * (control-plane/src/kubernetes/crd-policy-source.ts) feeds it what its
 * informers see.
 *
 * The rules are the policy dir's (policy-store.ts), object for file:
 *
 * - First load fails closed. Until the adapter has read every collection once
 *   (`markSynced`) and every object then present validated, `servable()` is
 *   false and nothing may be served; an invalid object at start keeps it so
 *   until the object is fixed or deleted. `allowInvalidAtStart` opts out.
 * - After that, per-object last-good: an edit that makes an object invalid
 *   is rejected whole and the object's previous valid version stays in force;
 *   a new object that is invalid from its first version puts nothing in force.
 *   The verdict (`verdict()`) is what the adapter writes on the object's
 *   status and in an Event.
 * - Deleting an object withdraws its policy: an explicit operator action.
 * - An object whose checked content (apiVersion, kind, the metadata a policy
 *   reads, spec) did not change is not judged again, so the status writes and
 *   resourceVersion bumps that follow a verdict never loop.
 *
 * A kind/namespace/name defined in both API groups is kept from
 * `security.trellis.dev` only (policy-merge.ts). A change event fires only
 * when the effective content changed (or the store became servable).
 */
import { EventEmitter } from 'node:events';
import { DEFAULT_ROOT_NAMESPACE, formatIssue, parsePolicyObject, policyObjectName, POLICY_CODES, type Logger, type Policy, type PolicyIssue, type PolicySet } from '@trellis/shared';
import { PolicySetPublisher } from './policy-set-publisher';

/** A policy object as the API server sends it (only the fields read here are typed). */
export interface PolicyObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; generation?: number; [field: string]: unknown };
  spec?: unknown;
  [field: string]: unknown;
}

/** Which object: API group, kind, namespace and name. */
export interface PolicyObjectRef {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
}

/** The judgement on an object's current version. */
export interface PolicyObjectVerdict {
  /** `valid`: this version is in force; `rejected`: it is not (the last valid one is, if any). */
  readonly state: 'valid' | 'rejected';
  /** metadata.generation of the version judged (null when the object carries none). */
  readonly generation: number | null;
  /** Why this version was rejected (empty when valid). */
  readonly errors: readonly PolicyIssue[];
  /** Warnings of the version judged. */
  readonly warnings: readonly PolicyIssue[];
  /** metadata.generation of the version in force; null when no version is (rejected from its first version). */
  readonly inForceGeneration: number | null;
}

/** Options of the store. */
export interface PolicyObjectStoreOptions {
  /** For the "selector in the root namespace" warning; default trellis-system. */
  rootNamespace?: string;
  /** Serve the valid objects even when some fail validation at first load (default false). */
  allowInvalidAtStart?: boolean;
  /** API groups in the order their definitions win a duplicate; default security.trellis.dev, security.istio.io. */
  groupOrder?: readonly string[];
}

/** Collaborators. */
export interface PolicyObjectStoreDeps {
  logger: Logger;
  /** Clock for status times and for undated objects. */
  now: () => Date;
}

/** One rejected or warned object in `status()`. */
export interface PolicyObjectStatus {
  readonly object: string;
  readonly apiVersion: string;
  readonly state: 'valid' | 'rejected';
  readonly generation: number | null;
  readonly inForceGeneration: number | null;
  readonly rejectedAt: string | null;
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

/** What /debug/policies shows for the API-server policies. */
export interface PolicyObjectStoreStatus {
  /** True once every collection was read once. */
  readonly synced: boolean;
  /** False until a first load in which every object validated (or allowInvalidAtStart). */
  readonly servable: boolean;
  readonly rootNamespace: string;
  /** sha256 of the effective content. */
  readonly version: string;
  readonly counts: { readonly objects: number; readonly rejected: number; readonly peerAuthentications: number; readonly authorizationPolicies: number };
  readonly duplicates: readonly string[];
  /** Objects that are rejected or carry warnings (the valid, clean ones are in `kubectl get`). */
  readonly objects: readonly PolicyObjectStatus[];
}

interface ObjectState {
  readonly ref: PolicyObjectRef;
  apiVersion: string;
  contentKey: string;
  verdict: PolicyObjectVerdict;
  good: Policy | null;
  rejectedAt: Date | null;
}

const DEFAULT_GROUP_ORDER = Object.freeze(['security.trellis.dev', 'security.istio.io']);

/** The API group of an apiVersion (`security.istio.io/v1` → `security.istio.io`; `v1` → ``). */
export function apiGroupOf(apiVersion: string): string {
  const i = apiVersion.indexOf('/');
  return i < 0 ? '' : apiVersion.slice(0, i);
}

/** `group/Kind/namespace/name`: the store's key of an object. */
export function policyObjectKey(ref: PolicyObjectRef): string {
  return `${ref.group}/${ref.kind}/${ref.namespace}/${ref.name}`;
}

/** The ref of an object as sent by the API server; null when it lacks a kind, name or namespace. */
export function policyObjectRef(obj: PolicyObject): PolicyObjectRef | null {
  const name = obj.metadata?.name;
  const namespace = obj.metadata?.namespace;
  if (typeof obj.kind !== 'string' || typeof name !== 'string' || typeof namespace !== 'string' || typeof obj.apiVersion !== 'string') return null;
  return { group: apiGroupOf(obj.apiVersion), kind: obj.kind, namespace, name };
}

/** `Kind namespace/name`, the name an object's issues carry where a file's would carry its path. */
export function policyObjectSource(ref: PolicyObjectRef): string {
  return policyObjectName(ref.kind, ref.namespace, ref.name);
}

/** The fields whose change needs a new verdict: what parsePolicyObject reads. */
function contentKey(obj: PolicyObject): string {
  const m = obj.metadata ?? {};
  return JSON.stringify([obj.apiVersion, obj.kind, m.name, m.namespace, m['labels'], m['annotations'], m['creationTimestamp'], obj.spec]);
}

/** The API-server policies, judged per object. Feed it with `apply`/`remove`, then `markSynced` once every collection was listed. */
export class PolicyObjectStore extends EventEmitter<{ change: [PolicySet] }> {
  private readonly objects = new Map<string, ObjectState>();
  private readonly root: string;
  private readonly groupRank: ReadonlyMap<string, number>;
  private readonly published: PolicySetPublisher;
  private synced = false;
  private dirty = false;

  constructor(
    private readonly opts: PolicyObjectStoreOptions,
    private readonly deps: PolicyObjectStoreDeps,
  ) {
    super();
    this.root = opts.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
    this.groupRank = new Map((opts.groupOrder ?? DEFAULT_GROUP_ORDER).map((g, i) => [g, i]));
    this.published = new PolicySetPublisher(deps, {
      updated: 'API-server policies updated',
      duplicate: 'policy defined in two API groups; security.trellis.dev wins',
      allValid: 'every policy object validated: API-server policies are served',
      servedAnyway: 'serving API-server policies although some failed validation at first load (allowInvalidAtStart): a workload whose only ALLOW policy is in a rejected object is allowed everything',
    });
  }

  /**
   * Judges the object's current version (an add or an update) and publishes
   * the result. Returns its ref and verdict, or null for an object without
   * kind, name or namespace (never sent by an API server).
   */
  apply(obj: PolicyObject): { ref: PolicyObjectRef; verdict: PolicyObjectVerdict } | null {
    const ref = policyObjectRef(obj);
    if (!ref) return null;
    const key = policyObjectKey(ref);
    const ck = contentKey(obj);
    const generation = typeof obj.metadata?.generation === 'number' ? obj.metadata.generation : null;
    const prev = this.objects.get(key);
    if (prev && prev.contentKey === ck) return { ref, verdict: prev.verdict };
    const source = policyObjectSource(ref);
    const parsed = parsePolicyObject(obj, source, { firstSeen: this.deps.now(), rootNamespace: this.root });
    const errors = parsed.issues.filter((i) => i.severity === 'error');
    const warnings = parsed.issues.filter((i) => i.severity === 'warning');
    const log = this.deps.logger;
    const state: ObjectState = prev ?? { ref, apiVersion: obj.apiVersion!, contentKey: ck, verdict: { state: 'valid', generation, errors: [], warnings: [], inForceGeneration: null }, good: null, rejectedAt: null };
    state.apiVersion = obj.apiVersion!;
    state.contentKey = ck;
    if (errors.length > 0 || parsed.policies.length !== 1) {
      const issues = errors.length > 0 ? errors : [{ severity: 'error' as const, code: POLICY_CODES.NOT_A_MANIFEST, file: source, documentIndex: -1, line: 0, column: 0, path: '', message: 'not a policy' }];
      const inForce = state.good ? state.verdict.inForceGeneration : null;
      state.verdict = Object.freeze({ state: 'rejected', generation, errors: issues, warnings, inForceGeneration: inForce });
      state.rejectedAt = this.deps.now();
      log.error(state.good ? 'policy object rejected; its last valid version stays in force' : 'policy object rejected; it has no valid version, so none is in force', {
        object: source,
        apiVersion: obj.apiVersion,
        generation,
        inForceGeneration: inForce,
        code: issues[0]?.code,
        issues: issues.slice(0, 20).map(formatIssue),
      });
    } else {
      if (prev?.verdict.state === 'rejected') log.info('policy object accepted again', { object: source, apiVersion: obj.apiVersion, generation });
      for (const w of warnings) log.warn('policy warning', { object: source, issue: formatIssue(w), code: w.code });
      state.good = parsed.policies[0]!;
      state.verdict = Object.freeze({ state: 'valid', generation, errors: [], warnings, inForceGeneration: generation });
      state.rejectedAt = null;
    }
    this.objects.set(key, state);
    this.dirty = true;
    this.settle();
    return { ref, verdict: state.verdict };
  }

  /** The object was deleted: its policy is withdrawn. Returns false when it was not known. */
  remove(ref: PolicyObjectRef): boolean {
    const key = policyObjectKey(ref);
    const state = this.objects.get(key);
    if (!state) return false;
    this.objects.delete(key);
    if (state.good) this.deps.logger.info('policy object deleted; its policy is withdrawn', { object: policyObjectSource(ref), apiVersion: state.apiVersion });
    this.dirty = true;
    this.settle();
    return true;
  }

  /** A collection is no longer served (its CRD was removed): every object of it is withdrawn. */
  forgetCollection(group: string, kind: string): number {
    let n = 0;
    for (const [key, s] of this.objects) {
      if (s.ref.group === group && s.ref.kind === kind) {
        this.objects.delete(key);
        n++;
      }
    }
    if (n > 0) {
      this.dirty = true;
      this.settle();
    }
    return n;
  }

  /** Every collection has been listed once: verdicts are known for every object there is. */
  markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.dirty = true;
    this.settle();
  }

  /** The verdict on an object's current version; undefined when unknown. */
  verdict(ref: PolicyObjectRef): PolicyObjectVerdict | undefined {
    return this.objects.get(policyObjectKey(ref))?.verdict;
  }

  /** Every known object's ref. */
  refs(): PolicyObjectRef[] {
    return [...this.objects.values()].map((s) => s.ref);
  }

  /** The PolicySet in force (frozen; replaced whole on change). Empty until synced. */
  current(): PolicySet {
    return this.published.current();
  }

  /** True once synced and every object then present validated (or allowInvalidAtStart); stays true. */
  servable(): boolean {
    return this.published.servable();
  }

  /** True once every collection was listed once. */
  isSynced(): boolean {
    return this.synced;
  }

  /** Calls `listener` with each new PolicySet (and when the store becomes servable); returns an unsubscribe function. */
  subscribe(listener: (set: PolicySet) => void): () => void {
    this.on('change', listener);
    return () => this.off('change', listener);
  }

  /** Everything an operator needs to see why an object's policy is or is not in force. */
  status(): PolicyObjectStoreStatus {
    const states = [...this.objects.values()].sort((a, b) => (policyObjectKey(a.ref) < policyObjectKey(b.ref) ? -1 : 1));
    const set = this.published.current();
    return {
      synced: this.synced,
      servable: this.published.servable(),
      rootNamespace: this.root,
      version: this.published.version(),
      counts: {
        objects: states.length,
        rejected: states.filter((s) => s.verdict.state === 'rejected').length,
        peerAuthentications: set.peerAuthentications.length,
        authorizationPolicies: set.authorizationPolicies.length,
      },
      duplicates: this.published.duplicates(),
      objects: states
        .filter((s) => s.verdict.state === 'rejected' || s.verdict.warnings.length > 0)
        .map((s) => ({
          object: policyObjectSource(s.ref),
          apiVersion: s.apiVersion,
          state: s.verdict.state,
          generation: s.verdict.generation,
          inForceGeneration: s.verdict.inForceGeneration,
          rejectedAt: s.rejectedAt?.toISOString() ?? null,
          errors: s.verdict.errors.map(formatIssue),
          warnings: s.verdict.warnings.map(formatIssue),
        })),
    };
  }

  /** Drops listeners; the last PolicySet stays readable. */
  close(): void {
    this.removeAllListeners();
  }

  /** After a change: decide servability, then publish. Nothing is published before the first full list. */
  private settle(): void {
    if (!this.synced) return;
    const becameServable = this.markComplete();
    const changed = this.publish();
    if (becameServable && !changed) this.emit('change', this.current());
  }

  /** Records the first complete load (policy-set-publisher.ts); true when this call made the store servable. */
  private markComplete(): boolean {
    const rejected = [...this.objects.values()].filter((s) => s.verdict.state === 'rejected').map((s) => policyObjectSource(s.ref));
    return this.published.markComplete(rejected.length === 0 || this.opts.allowInvalidAtStart === true, { rejected }, { objects: this.objects.size });
  }

  private publish(): boolean {
    if (!this.dirty) return false;
    this.dirty = false;
    const rank = (g: string): number => this.groupRank.get(g) ?? this.groupRank.size;
    const states = [...this.objects.values()]
      .filter((s) => s.good !== null)
      .sort((a, b) => rank(a.ref.group) - rank(b.ref.group) || (policyObjectKey(a.ref) < policyObjectKey(b.ref) ? -1 : 1));
    const changed = this.published.publish(states.map((s) => ({ origin: `${policyObjectSource(s.ref)} (${s.apiVersion})`, policy: s.good! })));
    if (changed) this.emit('change', this.current());
    return changed;
  }
}
