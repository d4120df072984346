/**
 * The parts of a Kubernetes Pod (or pod template) the injector reads.
 *
 * Typed loosely on purpose: the injector must preserve every field it does
 * not own, so it never rebuilds a pod from these types, it only reads them and
 * emits a patch.
 */
import { InjectorError } from '../errors/injector-error';

/** A container port as the API carries it. */
export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
  appProtocol?: string;
}

/** A probe; only `httpGet` is rewritten. */
export interface Probe {
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: Array<{ name: string; value: string }> };
  [k: string]: unknown;
}

/** A container (fields the injector reads). */
export interface Container {
  name: string;
  image?: string;
  ports?: ContainerPort[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  [k: string]: unknown;
}

/** ObjectMeta (fields the injector reads). */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string> | null;
  annotations?: Record<string, string> | null;
  [k: string]: unknown;
}

/** A Pod or a pod template (`metadata` + `spec`). */
export interface PodLike {
  metadata?: ObjectMeta | null;
  spec: {
    containers: Container[];
    initContainers?: Container[] | null;
    volumes?: unknown[] | null;
    hostNetwork?: boolean;
    serviceAccountName?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/**
 * Checks that `value` has the shape of a pod the injector can patch and
 * returns it typed. Throws TRELLIS_INJECTOR_BAD_MANIFEST naming the field.
 */
export function asPodLike(value: unknown, where = 'pod'): PodLike {
  const bad = (field: string, reason: string): never => {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', `${where}: ${field}: ${reason}`, { where, field });
  };
  if (!isObject(value)) return bad('(root)', 'must be an object');
  if (value.metadata !== undefined && value.metadata !== null && !isObject(value.metadata)) bad('metadata', 'must be an object');
  const meta = (value.metadata ?? {}) as Record<string, unknown>;
  for (const m of ['labels', 'annotations']) {
    const v = meta[m];
    if (v === undefined || v === null) continue;
    if (!isObject(v)) bad(`metadata.${m}`, 'must be a map of strings');
    for (const [k, s] of Object.entries(v as Record<string, unknown>)) if (typeof s !== 'string') bad(`metadata.${m}.${k}`, 'must be a string');
  }
  if (!isObject(value.spec)) return bad('spec', 'must be an object');
  const spec = value.spec;
  if (!Array.isArray(spec.containers)) return bad('spec.containers', 'must be a list');
  for (const list of ['containers', 'initContainers'] as const) {
    const arr = spec[list];
    if (arr === undefined || arr === null) continue;
    if (!Array.isArray(arr)) bad(`spec.${list}`, 'must be a list');
    (arr as unknown[]).forEach((c, i) => {
      if (!isObject(c) || typeof c.name !== 'string' || c.name === '') bad(`spec.${list}[${i}].name`, 'must be a non-empty string');
      const ports = (c as Record<string, unknown>).ports;
      if (ports === undefined || ports === null) return;
      if (!Array.isArray(ports)) bad(`spec.${list}[${i}].ports`, 'must be a list');
      (ports as unknown[]).forEach((p, j) => {
        const cp = isObject(p) ? p.containerPort : undefined;
        if (typeof cp !== 'number' || !Number.isInteger(cp) || cp < 1 || cp > 65535) bad(`spec.${list}[${i}].ports[${j}].containerPort`, 'must be an integer from 1 to 65535');
      });
    });
  }
  if (spec.volumes !== undefined && spec.volumes !== null && !Array.isArray(spec.volumes)) bad('spec.volumes', 'must be a list');
  return value as unknown as PodLike;
}

/** True for a non-null, non-array object. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
