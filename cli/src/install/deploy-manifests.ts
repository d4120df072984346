/**
 * The objects `kubectl kustomize deploy/` builds, read by Trellis itself so
 * `trellis install` needs no kubectl: deploy/ stays the one source of the
 * manifests (a test checks this reader against kustomize's own output).
 *
 * Only the kustomization features deploy/ uses are read (`resources`,
 * `namespace`, `labels` without selectors, `configMapGenerator` from files
 * with `disableNameSuffixHash`); any other field is refused rather than
 * ignored. YAML is read as 1.1, as kubectl reads it (`0440` is octal).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { KNOWN_KINDS, type KubeObject } from '@trellis/kubernetes';
import { UsageError } from '@trellis/shared';

/** Where deploy/ is: beside the CLI in the repository (cli/dist/src/install → repo root). */
export const DEFAULT_DEPLOY_DIR = resolve(__dirname, '..', '..', '..', '..', 'deploy');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

const SUPPORTED = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'configMapGenerator', 'generatorOptions']);

function readYamlDocs(file: string): KubeObject[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
  }
  return parseAllDocuments(text, { version: '1.1' })
    .map((d) => d.toJS() as unknown)
    .filter((d): d is KubeObject => isObj(d));
}

/** Reads `dir/kustomization.yaml` and builds its objects as kustomize does (for the features above). */
export function readDeployManifests(dir: string = DEFAULT_DEPLOY_DIR): KubeObject[] {
  const kfile = join(dir, 'kustomization.yaml');
  let k: Obj;
  try {
    k = parseYaml(readFileSync(kfile, 'utf8'), { version: '1.1' }) as Obj;
  } catch (err) {
    throw new UsageError(`cannot read ${kfile} (is --manifests the deploy/ folder?): ${(err as Error).message}`, { file: kfile });
  }
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new UsageError(`${kfile}: ${key}: not a kustomization feature trellis install reads; use kubectl apply -k`, { file: kfile });
  const namespace = typeof k.namespace === 'string' ? k.namespace : undefined;
  const labels: Record<string, string> = {};
  for (const l of (k.labels as Obj[] | undefined) ?? []) {
    if (l.includeSelectors === true || l.includeTemplates === true) throw new UsageError(`${kfile}: labels: only includeSelectors: false is read`, { file: kfile });
    Object.assign(labels, l.pairs as Record<string, string>);
  }
  const objects: KubeObject[] = [];
  for (const r of (k.resources as string[] | undefined) ?? []) objects.push(...readYamlDocs(join(dir, r)));
  const opts = (k.generatorOptions ?? {}) as Obj;
  for (const g of (k.configMapGenerator as Obj[] | undefined) ?? []) {
    if (opts.disableNameSuffixHash !== true) throw new UsageError(`${kfile}: configMapGenerator needs generatorOptions.disableNameSuffixHash: true here`, { file: kfile });
    const data: Record<string, string> = {};
    for (const f of (g.files as string[]) ?? []) {
      const [key, path] = f.includes('=') ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] : [f.split('/').pop()!, f];
      data[key!] = readFileSync(resolve(dirname(kfile), path!), 'utf8');
    }
    objects.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: String(g.name) }, data });
  }
  for (const o of objects) {
    const meta = (o.metadata ??= {});
    if (namespace !== undefined && KNOWN_KINDS[o.kind ?? '']?.namespaced) meta.namespace = namespace;
    if (Object.keys(labels).length > 0) meta.labels = { ...(meta.labels ?? {}), ...labels };
  }
  return objects;
}
