/**
 * Policies as JSON manifests: a normalised policy back to its Istio-shaped
 * manifest, and JSON manifests through the full validation of `trellis
 * validate` (YAML, JSON Schema, semantics), with the creation timestamp kept
 * so conflict order survives the trip. For tools and tests: the control
 * plane does NOT send this form to sidecars (it sends the compiled form of
 * authz-wire.ts, which a sidecar decodes without yaml or ajv).
 */
import { parsePolicyFile } from './parse-policy-file';
import { formatIssue, POLICY_CODES, PolicyError } from './policy-error';
import { DRY_RUN_ANNOTATION } from './policy-semantics';
import type { AuthzOperation, AuthzRule, Policy } from './policy-types';

/** A manifest object, JSON-safe. */
export type PolicyManifest = Record<string, unknown>;

/** Converts a normalised policy back to an Istio-shaped manifest (JSON-safe). */
export function policyToManifest(p: Policy): PolicyManifest {
  const metadata: Record<string, unknown> = { name: p.metadata.name, namespace: p.metadata.namespace, creationTimestamp: p.metadata.creationTimestamp };
  const spec: Record<string, unknown> = {};
  if (p.matchLabels) spec['selector'] = { matchLabels: { ...p.matchLabels } };
  if (p.kind === 'PeerAuthentication') {
    if (p.mtlsMode !== 'UNSET') spec['mtls'] = { mode: p.mtlsMode };
    const ports = Object.entries(p.portLevelMtls);
    if (ports.length) spec['portLevelMtls'] = Object.fromEntries(ports.map(([port, mode]) => [port, { mode }]));
  } else {
    spec['action'] = p.action;
    if (p.dryRun) metadata['annotations'] = { [DRY_RUN_ANNOTATION]: 'true' };
    if (p.rules) spec['rules'] = p.rules.map(ruleToManifest);
  }
  return { apiVersion: p.metadata.apiVersion, kind: p.kind, metadata, spec };
}

function ruleToManifest(r: AuthzRule): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (r.from) out['from'] = r.from.map((s) => ({ source: JSON.parse(JSON.stringify(s)) as unknown }));
  if (r.to) {
    out['to'] = r.to.map((o: AuthzOperation) => {
      const op: Record<string, unknown> = JSON.parse(JSON.stringify(o)) as Record<string, unknown>;
      for (const f of ['ports', 'notPorts']) if (Array.isArray(op[f])) op[f] = (op[f] as number[]).map(String);
      return { operation: op };
    });
  }
  return out;
}

/** Policies → JSON-safe array for the wire. */
export function policiesToJSON(policies: readonly Policy[]): PolicyManifest[] {
  return policies.map(policyToManifest);
}

/**
 * JSON manifests → validated, frozen policies (loads yaml and ajv). Throws
 * PolicyError TRELLIS_POLICY_WIRE listing every problem when anything is
 * invalid, or a policy has no creationTimestamp: all or nothing.
 */
export function policiesFromJSON(data: unknown, origin = '<wire>'): Policy[] {
  if (!Array.isArray(data)) throw new PolicyError(POLICY_CODES.WIRE, `${origin}: policies must be a JSON array`);
  const text = data.map((m) => JSON.stringify(m)).join('\n---\n');
  const parsed = parsePolicyFile(text, origin, { firstSeen: new Date(0) });
  const errors = parsed.issues.filter((i) => i.severity === 'error');
  const untimed = parsed.policies.filter((p) => p.metadata.creationTimestampSource !== 'manifest');
  if (errors.length > 0 || untimed.length > 0) {
    const first = errors[0] ? formatIssue(errors[0]) : `${untimed.length} policies without creationTimestamp`;
    throw new PolicyError(POLICY_CODES.WIRE, `${origin}: invalid policies (${errors.length || untimed.length} problems; first: ${first})`, errors);
  }
  return parsed.policies;
}
