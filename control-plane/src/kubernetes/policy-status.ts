/**
 * What the control plane reports on a policy object (pure): one condition in
 * its `status.conditions` and, when the verdict turns, an Event. The message
 * is the admission webhook's and `trellis validate`'s text
 * (`formatRejection`: `Kind ns/name: field.path: reason [CODE]`), followed by
 * what is in force instead, so `kubectl describe` says exactly what
 * `trellis validate` would.
 *
 * The condition type is `Accepted` on Trellis's own CRDs and
 * `TrellisAccepted` on Istio's (as ztunnel writes `ZtunnelAccepted`), so
 * Trellis never overwrites a condition istiod owns; other conditions in the
 * list are left as they are. `lastTransitionTime` moves only when the
 * condition's status does, as metav1.Condition requires.
 */
import { formatIssue, formatRejection } from '@trellis/shared';
import type { PolicyObjectVerdict } from '../policy/policy-object-store';

/** A metav1.Condition. */
export interface PolicyCondition {
  readonly type: string;
  readonly status: 'True' | 'False';
  readonly reason: 'Valid' | 'Invalid';
  readonly message: string;
  readonly observedGeneration?: number;
  readonly lastTransitionTime: string;
}

/** Longest condition message written (metav1.Condition allows 32768). */
export const MAX_CONDITION_MESSAGE = 8192;
/** Longest Event message written (the API server's limit for events.k8s.io notes is 1 kB). */
export const MAX_EVENT_MESSAGE = 1024;

/** The condition type Trellis owns on objects of `group`. */
export function acceptedConditionType(group: string): string {
  return group === 'security.trellis.dev' ? 'Accepted' : 'TrellisAccepted';
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** The condition for a verdict (without lastTransitionTime). */
export function policyCondition(group: string, v: PolicyObjectVerdict): Omit<PolicyCondition, 'lastTransitionTime'> {
  const gen = v.generation !== null ? { observedGeneration: v.generation } : {};
  if (v.state === 'valid') {
    const warnings = v.warnings.length > 0 ? `; warnings: ${v.warnings.map(formatIssue).join('; ')}` : '';
    return { type: acceptedConditionType(group), status: 'True', reason: 'Valid', message: clip(`the policy is valid${warnings}`, MAX_CONDITION_MESSAGE), ...gen };
  }
  const instead = v.inForceGeneration !== null ? `the last valid version (generation ${v.inForceGeneration}) stays in force` : 'no version of it is in force';
  return { type: acceptedConditionType(group), status: 'False', reason: 'Invalid', message: clip(`${formatRejection(v.errors)}; ${instead}`, MAX_CONDITION_MESSAGE), ...gen };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The same condition (lastTransitionTime aside)? */
function sameCondition(a: Obj | undefined, b: Omit<PolicyCondition, 'lastTransitionTime'>): boolean {
  return a !== undefined && a['status'] === b.status && a['reason'] === b.reason && a['message'] === b.message && a['observedGeneration'] === b.observedGeneration;
}

/**
 * `status` with `cond` set in its conditions (others kept). `changed` is
 * false when the object already says this; `previous` is the condition it
 * replaces, if any.
 */
export function statusWithCondition(status: unknown, cond: Omit<PolicyCondition, 'lastTransitionTime'>, now: Date): { status: Obj; changed: boolean; previous: PolicyCondition | undefined } {
  const base: Obj = isObj(status) ? { ...status } : {};
  const conditions = Array.isArray(base['conditions']) ? (base['conditions'] as unknown[]).filter(isObj) : [];
  const previous = conditions.find((c) => c['type'] === cond.type) as (Obj & PolicyCondition) | undefined;
  if (sameCondition(previous, cond)) return { status: base, changed: false, previous };
  const lastTransitionTime = previous && previous.status === cond.status && typeof previous.lastTransitionTime === 'string' ? previous.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const next: PolicyCondition = { ...cond, lastTransitionTime };
  base['conditions'] = previous ? conditions.map((c) => (c === previous ? next : c)) : [...conditions, next];
  return { status: base, changed: true, previous };
}

/** The Event reason and type for a condition change, or null when the change is not news (valid from the start, or a status rewrite). */
export function policyEventKind(previous: Pick<PolicyCondition, 'status' | 'message'> | undefined, next: Pick<PolicyCondition, 'status' | 'message'>): { type: 'Warning' | 'Normal'; reason: 'PolicyInvalid' | 'PolicyValid' } | null {
  if (next.status === 'False') return previous && previous.status === 'False' && previous.message === next.message ? null : { type: 'Warning', reason: 'PolicyInvalid' };
  return previous?.status === 'False' ? { type: 'Normal', reason: 'PolicyValid' } : null;
}

/** The object an Event is about. */
export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
}

/** A core/v1 Event on `about` (every Kubernetes version serves it). `suffix` makes the name unique, as client-go's `NAME.%x`. */
export function policyEvent(about: InvolvedObject, kind: { type: 'Warning' | 'Normal'; reason: string }, message: string, now: Date, suffix: string): Record<string, unknown> {
  const ts = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${about.name}.${suffix}`, namespace: about.namespace },
    involvedObject: { ...about },
    type: kind.type,
    reason: kind.reason,
    message: clip(message, MAX_EVENT_MESSAGE),
    source: { component: 'trellis-control-plane' },
    firstTimestamp: ts,
    lastTimestamp: ts,
    count: 1,
  };
}
