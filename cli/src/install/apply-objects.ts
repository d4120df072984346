/**
 * Applies objects with server-side apply as field manager `trellis-install`
 * (force: we own what we apply). A field someone else owns and we do not
 * send, like the caBundle the injector writes, is left alone, and an apply
 * that changes nothing leaves the object's resourceVersion as it was, which
 * is how a re-run reports `unchanged`.
 */
import { canonicalJson } from '@trellis/shared';
import { KubernetesError, KubernetesErrorCode, objectPath, objectRef, type KubeClient, type KubeObject } from '@trellis/kubernetes';
import { pollUntil } from '../up/admin-client';

/** What happened to one object. */
export interface ApplyResult {
  /** `Kind/namespace/name`. */
  readonly ref: string;
  readonly result: 'created' | 'configured' | 'unchanged' | 'deleted' | 'absent';
}

/** The field manager install applies as. */
export const FIELD_MANAGER = 'trellis-install';

/** `Kind/ns/name` of an object. */
export function describeObject(o: KubeObject): string {
  return `${o.kind}/${objectRef(o)}`;
}

/** The annotation `kubectl apply` (client side) keeps its last applied object in. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** The project's canonical JSON (keys sorted) with the characters Go's encoder escapes for HTML: the annotation must match kubectl's byte for byte. */
function goJson(v: unknown): string {
  return canonicalJson(v).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * `o` with the annotation `kubectl apply` would write for the same manifest,
 * so that applying install's manifests with kubectl afterwards (the
 * documented `kubectl apply -f`) finds nothing to change.
 */
export function withLastApplied(o: KubeObject): KubeObject {
  const annotations = { ...((o.metadata as { annotations?: Record<string, string> } | undefined)?.annotations ?? {}) };
  delete annotations[LAST_APPLIED_ANNOTATION];
  // kubectl sets the annotation on its copy and takes it out of what it encodes, leaving `annotations: {}` when it was the only one.
  const bare = { ...o, metadata: { ...o.metadata, annotations } } as KubeObject;
  return { ...bare, metadata: { ...bare.metadata, annotations: { ...annotations, [LAST_APPLIED_ANNOTATION]: goJson(bare) + '\n' } } } as KubeObject;
}

/** Applies `objects` in order; resolves to one result each. */
export async function applyObjects(client: KubeClient, objects: readonly KubeObject[]): Promise<ApplyResult[]> {
  const out: ApplyResult[] = [];
  for (const o of objects) {
    const path = objectPath(o);
    const before = await client.getOrNull(path);
    const after = await client.apply(path, withLastApplied(o), FIELD_MANAGER);
    const result = before === null ? 'created' : before.metadata?.resourceVersion === after.metadata?.resourceVersion ? 'unchanged' : 'configured';
    out.push({ ref: describeObject(o), result });
  }
  return out;
}

/** Deletes `objects` in order (foreground for namespaces' contents is the API server's job). */
export async function deleteObjects(client: KubeClient, objects: readonly KubeObject[]): Promise<ApplyResult[]> {
  const out: ApplyResult[] = [];
  for (const o of objects) {
    try {
      const gone = await client.delete(objectPath(o), { propagationPolicy: 'Background' });
      out.push({ ref: describeObject(o), result: gone ? 'deleted' : 'absent' });
    } catch (err) {
      // A kind this server does not serve (e.g. policy/v1 on 1.20) holds nothing to delete.
      if (err instanceof KubernetesError && err.code === KubernetesErrorCode.NOT_FOUND) out.push({ ref: describeObject(o), result: 'absent' });
      else throw err;
    }
  }
  return out;
}

/**
 * Waits until none of `objects` exists any more, as `kubectl delete` does: a
 * deleted CRD stays (Terminating) until the API server has removed every
 * object of its kinds, and an install run in that window would fail.
 * Resolves to the refs of the objects still present at `timeoutMs`.
 */
export async function waitGone(client: KubeClient, objects: readonly KubeObject[], timeoutMs: number): Promise<string[]> {
  let left = [...objects];
  const gone = async (): Promise<true | string> => {
    const present = await Promise.all(left.map(async (o) => ((await client.getOrNull(objectPath(o))) === null ? null : o)));
    left = present.filter((o): o is KubeObject => o !== null);
    return left.length === 0 ? true : `${left.length} still present`;
  };
  await pollUntil('deleted objects to be gone', gone, timeoutMs).catch(() => undefined);
  return left.map(describeObject);
}
