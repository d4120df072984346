/**
 * Offline injection over multi-document YAML, like `istioctl kube-inject`:
 * Pods and the pod templates of workload controllers get the same patch the
 * webhook would send; every other document passes through unchanged (it is
 * re-serialized, so comments inside it are not kept).
 */
import { applyPatch } from 'fast-json-patch';
import { parseAllDocuments, stringify } from 'yaml';
import type { InjectorConfig } from '../config/injector-config';
import { InjectorError } from '../errors/injector-error';
import type { InjectionReason } from '../inject/inject-decision';
import { injectPod } from '../inject/inject-pod';
import { isObject } from '../inject/pod-shape';
import { TrellisError } from '@trellis/shared';

/** Where the pod template sits in each workload kind that injection handles (other kinds pass through). */
export const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
  DeploymentConfig: ['spec', 'template'],
};

/** What happened to one workload (List items are reported one by one). */
export interface ManifestReport {
  document: number;
  kind: string;
  name: string;
  injected: boolean;
  reason: InjectionReason | 'not-a-workload';
}

/** Output YAML and a report per document. */
export interface InjectManifestsResult {
  yaml: string;
  reports: ManifestReport[];
}

/**
 * Injects every workload in `text` (multi-document YAML read from `source`).
 * Throws TRELLIS_INJECTOR_BAD_MANIFEST naming the file, the document number
 * and the line for YAML that does not parse, and naming the field for a
 * workload that cannot be injected.
 */
export function injectManifests(text: string, source: string, config: InjectorConfig): InjectManifestsResult {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const out: string[] = [];
  const reports: ManifestReport[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    const n = i + 1;
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const line = e.linePos?.[0]?.line;
      throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', `${source}: document ${n}${line ? ` (line ${line})` : ''}: not valid YAML: ${e.message.split('\n')[0]}`, { source, document: n, line });
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    const injected = injectObject(value, { source, document: n, config, reports });
    out.push(stringify(injected, { lineWidth: 0 }));
  });
  return { yaml: out.join('---\n'), reports };
}

interface Walk {
  source: string;
  document: number;
  config: InjectorConfig;
  reports: ManifestReport[];
}

function injectObject(value: unknown, w: Walk): unknown {
  if (!isObject(value) || typeof value.kind !== 'string') return value;
  const kind = value.kind;
  const name = isObject(value.metadata) && typeof value.metadata.name === 'string' ? value.metadata.name : '';
  if (kind === 'List' && Array.isArray(value.items)) {
    return { ...value, items: value.items.map((item) => injectObject(item, w)) };
  }
  const path = TEMPLATE_PATHS[kind];
  if (path === undefined) {
    w.reports.push({ document: w.document, kind, name, injected: false, reason: 'not-a-workload' });
    return value;
  }
  const copy = structuredClone(value) as Record<string, unknown>;
  let template: unknown = copy;
  for (const key of path) template = isObject(template) ? template[key] : undefined;
  const where = `${w.source}: document ${w.document} (${kind} ${name || '<unnamed>'})${path.length ? ': ' + path.join('.') : ''}`;
  if (!isObject(template)) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_MANIFEST', `${where}: missing pod template`, { source: w.source, document: w.document, field: path.join('.') });
  }
  const namespace = isObject(copy.metadata) && typeof copy.metadata.namespace === 'string' ? copy.metadata.namespace : undefined;
  try {
    const result = injectPod(template, w.config, { namespace, namespaceInjection: 'enabled' });
    applyPatch(template, result.patch, true, true);
    w.reports.push({ document: w.document, kind, name, injected: result.injected, reason: result.reason });
  } catch (err) {
    if (err instanceof TrellisError) {
      throw new InjectorError(err.code === 'TRELLIS_INJECTOR_BAD_ANNOTATION' ? 'TRELLIS_INJECTOR_BAD_ANNOTATION' : 'TRELLIS_INJECTOR_BAD_MANIFEST', `${where}: ${err.message}`, { source: w.source, document: w.document, ...err.details }, { cause: err });
    }
    throw err;
  }
  return copy;
}
