/**
 * What `trellis install` applies: deploy/'s objects, adapted to the options
 * (image, trust domain) and to what the API server supports (from
 * discovery), plus the CA Secret, in an order that never breaks admission:
 * the webhook configurations come last, once the injector that serves them
 * exists. Pure.
 *
 * Adaptations to older servers (docs/kubernetes.md):
 * - no CRD CEL rules before 1.25 (the server would drop them, and kubectl's
 *   client-side check refuses them; the validating webhook checks the same);
 * - PodDisruptionBudget policy/v1beta1 where policy/v1 is not served (< 1.21);
 * - classic sidecars before 1.29 (`nativeSidecar: false` in the injector config).
 */
import type { ApiFeatures, KubeObject } from '@trellis/kubernetes';

/** The image deploy/ names; `--image` replaces it everywhere. */
export const DEFAULT_IMAGE = 'ghcr.io/trellis-mesh/trellis:0.1.0';
/** The trust domain deploy/ is written for. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** The CA Secret the control plane mounts. */
export const CA_SECRET_NAME = 'trellis-ca';

/** Install options. */
export interface InstallPlanOptions {
  image?: string;
  trustDomain: string;
  /** The CA Secret's files (name → PEM); absent: leave the Secret as it is. */
  caFiles?: Record<string, string>;
  namespace: string;
}

const ORDER = [
  'Namespace', 'CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'ConfigMap', 'Secret',
  'Service', 'Deployment', 'PodDisruptionBudget', 'NetworkPolicy', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration',
];

/** Sort key for apply order (unknown kinds before the webhooks). */
export function applyRank(kind: string | undefined): number {
  const i = ORDER.indexOf(kind ?? '');
  return i < 0 ? ORDER.length - 2.5 : i;
}

function stripCel(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(stripCel);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).filter(([k]) => k !== 'x-kubernetes-validations').map(([k, v]) => [k, stripCel(v)]));
}

function setYamlField(text: string, field: string, value: string): string {
  const re = new RegExp(`^${field}:.*$`, 'm');
  return re.test(text) ? text.replace(re, `${field}: ${value}`) : `${text.replace(/\n?$/, '\n')}${field}: ${value}\n`;
}

/** The objects to apply, in order, and notes on what was adapted. */
export function installPlan(deploy: readonly KubeObject[], opts: InstallPlanOptions, features: ApiFeatures | null): { objects: KubeObject[]; notes: string[] } {
  const notes: string[] = [];
  const image = opts.image ?? DEFAULT_IMAGE;
  let objects: KubeObject[] = structuredClone(deploy as KubeObject[]);
  for (const o of objects) {
    if (o.kind === 'Deployment') {
      const spec = ((o.spec as { template?: { spec?: { containers?: Array<{ image?: string; args?: string[] }>; initContainers?: Array<{ image?: string }> } } }).template?.spec ?? {});
      for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) if (c.image === DEFAULT_IMAGE) c.image = image;
      for (const c of spec.containers ?? []) {
        const i = c.args?.indexOf('--trust-domain') ?? -1;
        if (i >= 0) c.args![i + 1] = opts.trustDomain;
      }
    }
    if (o.kind === 'ConfigMap' && o.metadata?.name === 'trellis-injector-config') {
      const data = o.data as Record<string, string>;
      let text = data['config.yaml'] ?? '';
      if (image !== DEFAULT_IMAGE) text = setYamlField(text, 'image', image);
      if (opts.trustDomain !== DEFAULT_TRUST_DOMAIN) text = setYamlField(text, 'trustDomain', opts.trustDomain);
      if (features && !features.nativeSidecars && /^nativeSidecar: true/m.test(text)) {
        text = setYamlField(text, 'nativeSidecar', 'false');
        notes.push(`native sidecars need Kubernetes 1.29+ (this server: ${features.serverVersion.gitVersion}): the injector config uses classic sidecars`);
      }
      data['config.yaml'] = text;
    }
  }
  if (features) {
    if (!features.crdValidationRules) {
      objects = objects.map((o) => (o.kind === 'CustomResourceDefinition' ? (stripCel(o) as KubeObject) : o));
      notes.push('CRD CEL rules need Kubernetes 1.25+: left out; the validating webhook checks the same rules');
    }
    if (features.podDisruptionBudget === 'policy/v1beta1') {
      for (const o of objects) if (o.kind === 'PodDisruptionBudget') o.apiVersion = 'policy/v1beta1';
      notes.push('PodDisruptionBudgets as policy/v1beta1 (policy/v1 needs Kubernetes 1.21+)');
    } else if (features.podDisruptionBudget === null) {
      objects = objects.filter((o) => o.kind !== 'PodDisruptionBudget');
      notes.push('no PodDisruptionBudget API served: PodDisruptionBudgets left out');
    }
  }
  if (opts.caFiles) {
    objects.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: CA_SECRET_NAME, namespace: opts.namespace, labels: { 'app.kubernetes.io/part-of': 'trellis' } },
      type: 'Opaque',
      data: Object.fromEntries(Object.entries(opts.caFiles).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')])),
    });
  }
  objects.sort((a, b) => applyRank(a.kind) - applyRank(b.kind));
  return { objects, notes };
}
