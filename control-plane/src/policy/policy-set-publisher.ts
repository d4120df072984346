/**
 * The one model behind both policy stores (the policy dir's files in
 * policy-store.ts, the API server's objects in policy-object-store.ts): each
 * store judges its sources (a file, an object) and keeps every source's last
 * good policies; this holds what they publish from them.
 *
 * - First load fails closed: until the store reports one complete load in
 *   which every source validated (or the operator opted out with
 *   allowInvalidAtStart), `servable()` is false and nothing may be served.
 *   It stays true afterwards, since later rejections keep their source's
 *   last good version.
 * - The set is rebuilt whole from the sources' good policies, in the
 *   store's reading order, a kind/namespace/name defined twice kept from
 *   the first source (policy-merge.ts), and swapped in only when its
 *   meaning changed (origins and comments ignored), with a content version
 *   (sha256 of that meaning) and a `change` event.
 *
 * No I/O, no timers: the stores call it after each judgement.
 */
import { createHash } from 'node:crypto';
import { buildPolicySet, policySetFingerprint, POLICY_CODES, type Logger, type PolicySet } from '@trellis/shared';
import { mergePolicies, type PolicyEntry } from './policy-merge';

/** How the owning store words its log lines. */
export interface PolicySetPublisherWording {
  /** Logged (info) when a new set is published, e.g. `policies updated`. */
  readonly updated: string;
  /** Logged (warn) for each duplicate when the list changes, e.g. `policy defined in two files; the first file wins`. */
  readonly duplicate: string;
  /** Logged (info) at the first complete load when everything validated. */
  readonly allValid: string;
  /** Logged (warn) at the first complete load when something did not validate (allowInvalidAtStart). */
  readonly servedAnyway: string;
}

/** The published PolicySet of one store, replaced whole. The store emits its own `change` events from the results. */
export class PolicySetPublisher {
  private set: PolicySet = buildPolicySet([]);
  private fingerprint = policySetFingerprint(this.set);
  private versionHash = sha256(this.fingerprint);
  private duplicateLines: string[] = [];
  private complete = false;

  constructor(
    private readonly deps: { logger: Logger },
    private readonly wording: PolicySetPublisherWording,
    /** Fields added to every log line (the store's dir, ...). */
    private readonly logFields: Record<string, unknown> = {},
  ) {}

  /** The PolicySet in force (frozen). */
  current(): PolicySet {
    return this.set;
  }

  /** sha256 of the effective content; changes exactly when `publish` returns true. */
  version(): string {
    return this.versionHash;
  }

  /** True once a complete load validated (or was allowed not to); stays true. */
  servable(): boolean {
    return this.complete;
  }

  /** One line per policy defined twice and ignored (the later origin). */
  duplicates(): string[] {
    return [...this.duplicateLines];
  }

  /**
   * Records a complete load: `ok` when every source validated or the
   * operator allowed serving anyway; `problems.rejected` names the sources
   * that did not validate. True when this call made the set servable (the
   * store then tells its listeners even if the content did not change).
   */
  markComplete(ok: boolean, problems: { readonly rejected: readonly string[]; readonly [field: string]: unknown }, counts: Record<string, unknown> = {}): boolean {
    if (this.complete || !ok) return false;
    this.complete = true;
    const failed = Object.entries(problems).some(([, v]) => (Array.isArray(v) ? v.length > 0 : v !== null && v !== undefined));
    if (failed) this.deps.logger.warn(this.wording.servedAnyway, { ...this.logFields, ...problems });
    else this.deps.logger.info(this.wording.allValid, { ...this.logFields, ...counts });
    return true;
  }

  /**
   * Rebuilds the set from `entries` (the sources' good policies in reading
   * order; the first definition of a kind/namespace/name wins) and publishes
   * it when its meaning changed. True when it did.
   */
  publish(entries: Iterable<PolicyEntry>): boolean {
    const { policies, duplicates } = mergePolicies(entries);
    if (duplicates.join('\n') !== this.duplicateLines.join('\n')) {
      for (const d of duplicates) this.deps.logger.warn(this.wording.duplicate, { issue: d, code: POLICY_CODES.DUPLICATE });
    }
    this.duplicateLines = duplicates;
    const set = buildPolicySet(policies);
    const fp = policySetFingerprint(set);
    if (fp === this.fingerprint) return false;
    this.set = set;
    this.fingerprint = fp;
    this.versionHash = sha256(fp);
    this.deps.logger.info(this.wording.updated, { ...this.logFields, version: this.versionHash.slice(0, 12), peerAuthentications: set.peerAuthentications.length, authorizationPolicies: set.authorizationPolicies.length });
    return true;
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
