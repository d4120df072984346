/**
 * What a workload is known by beyond its identity: the service whose
 * endpoints it serves, its labels (what policies select on) and the inbound
 * ports its endpoints are published on. The same bounds hold wherever this
 * metadata appears (a join token's claims, a sidecar's node), so nothing a
 * token can attest is later refused as too large, and no node can make the
 * control plane hold more than a few KiB. Labels are shaped as Kubernetes
 * shapes them (so a selector means the same thing here and there); the
 * service name as callers write it in `--outbound PORT=SERVICE`.
 */

/** Service, labels and inbound ports of one workload. */
export interface WorkloadMetadata {
  /** '' when the workload serves no service. */
  readonly service: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly inboundPorts: readonly number[];
}

/**
 * The bounds, documented in docs/protocol.md. Label keys and values are
 * Kubernetes's own limits (a key is an optional DNS-subdomain prefix of up
 * to 253 characters, '/', and a name of up to 63); 64 labels is far more than
 * a workload carries; 16 KiB bounds a whole node message (every string's
 * UTF-8 bytes, 4 per port), so 64 maximal labels (24 KiB) do not fit at once.
 */
export const WORKLOAD_METADATA_LIMITS = Object.freeze({
  maxLabels: 64,
  maxLabelKeyChars: 317,
  maxLabelValueChars: 63,
  maxServiceChars: 253,
  maxPorts: 64,
  maxNodeBytes: 16 * 1024,
});

const L = WORKLOAD_METADATA_LIMITS;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** As the sidecar's `--outbound PORT=SERVICE` accepts it. */
const SERVICE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * Every problem with `m`, each naming its field ("labels.app: ..."): sizes,
 * counts, and the Kubernetes label syntax. Empty when it is acceptable.
 */
export function workloadMetadataProblems(m: { service?: string; labels?: Readonly<Record<string, string>>; inboundPorts?: readonly number[] }): string[] {
  const problems: string[] = [];
  const service = m.service ?? '';
  if (service.length > L.maxServiceChars) problems.push(`service: longer than ${L.maxServiceChars} characters`);
  else if (service !== '' && !SERVICE_NAME.test(service)) problems.push(`service: "${service}" is not a DNS-style name (lower-case letters, digits, '-' and '.')`);
  const labels = Object.entries(m.labels ?? {});
  if (labels.length > L.maxLabels) problems.push(`labels: ${labels.length} labels, at most ${L.maxLabels}`);
  for (const [k, v] of labels.slice(0, L.maxLabels)) {
    const key = k.length > 80 ? `${k.slice(0, 80)}…` : k;
    const keyProblem = labelKeyProblem(k);
    if (keyProblem) problems.push(`labels.${key}: ${keyProblem}`);
    if (typeof v !== 'string') problems.push(`labels.${key}: value must be a string`);
    else if (v.length > L.maxLabelValueChars) problems.push(`labels.${key}: value longer than ${L.maxLabelValueChars} characters`);
    else if (v !== '' && !LABEL_NAME.test(v)) problems.push(`labels.${key}: value "${v}" must be alphanumeric with '-', '_' or '.' inside`);
  }
  const ports = m.inboundPorts ?? [];
  if (ports.length > L.maxPorts) problems.push(`inboundPorts: ${ports.length} ports, at most ${L.maxPorts}`);
  for (const p of ports.slice(0, L.maxPorts)) if (!Number.isInteger(p) || p < 1 || p > 65535) problems.push(`inboundPorts: ${String(p).slice(0, 20)} is not a port (1..65535)`);
  if (new Set(ports).size !== ports.length) problems.push('inboundPorts: a port is listed twice');
  return problems;
}

/** Why `key` is not a Kubernetes label key, or null. */
function labelKeyProblem(key: string): string | null {
  if (key.length > L.maxLabelKeyChars) return `key longer than ${L.maxLabelKeyChars} characters`;
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : null;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== null && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return 'key prefix must be a DNS subdomain of at most 253 characters';
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) return "key name must be 1..63 characters, alphanumeric with '-', '_' or '.' inside";
  return null;
}

/** True when both label sets hold exactly the same keys and values. */
export function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && b[k] === a[k]);
}
