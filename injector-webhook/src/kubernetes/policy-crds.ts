/**
 * CustomResourceDefinitions for `security.trellis.dev/v1` PeerAuthentication
 * and AuthorizationPolicy, generated from the policy JSON Schemas in
 * `shared/` so the cluster validates exactly what the control plane accepts.
 *
 * JSON Schema → Kubernetes structural schema: `const` becomes a one-value
 * `enum`; `additionalProperties: false` is dropped (the API server prunes
 * unknown fields of a structural schema instead); `propertyNames.pattern`
 * becomes a CEL rule on the map keys; `$id`/`$schema`/`title` are dropped.
 */

/** A JSON Schema object (the subset the policy schemas use). */
export type JsonSchema = Record<string, unknown>;

/** Converts one JSON Schema node to an OpenAPI v3 structural-schema node. */
export function toStructuralSchema(node: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(node)) {
    switch (k) {
      case '$id':
      case '$schema':
      case 'title':
        break;
      case 'const':
        out.enum = [v];
        break;
      case 'additionalProperties':
        if (typeof v === 'object' && v !== null) out.additionalProperties = toStructuralSchema(v as JsonSchema);
        break;
      case 'properties':
        out.properties = Object.fromEntries(Object.entries(v as Record<string, JsonSchema>).map(([name, s]) => [name, toStructuralSchema(s)]));
        break;
      case 'items':
        out.items = toStructuralSchema(v as JsonSchema);
        break;
      case 'propertyNames': {
        const pattern = (v as JsonSchema).pattern;
        if (typeof pattern === 'string') {
          out['x-kubernetes-validations'] = [{ rule: `self.all(k, k.matches(${JSON.stringify(pattern)}))`, message: `keys must match ${pattern}` }];
        }
        break;
      }
      default:
        out[k] = v;
    }
  }
  return out;
}

/** Names of one CRD. */
export interface CrdNames {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  /** Extra `kubectl get` columns: [name, JSONPath]. */
  columns: Array<[string, string]>;
}

/** Builds the CRD object for `schema` (a whole-document policy schema with a `spec` property). */
export function policyCrd(schema: JsonSchema, names: CrdNames): Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
  const spec = props.spec ? toStructuralSchema(props.spec) : { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.security.trellis.dev`, labels: { 'app.kubernetes.io/part-of': 'trellis' } },
    spec: {
      group: 'security.trellis.dev',
      scope: 'Namespaced',
      names: { kind: names.kind, listKind: `${names.kind}List`, plural: names.plural, singular: names.singular, shortNames: names.shortNames, categories: ['trellis'] },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            ...names.columns.map(([name, jsonPath]) => ({ name, type: 'string', jsonPath })),
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: `Trellis ${names.kind} (Istio security API shape). Generated from shared/src/policy/schemas; do not edit by hand.`,
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec,
                status: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
              },
            },
          },
        },
      ],
    },
  };
}

/** Both policy CRDs, from the PeerAuthentication and AuthorizationPolicy schemas. */
export function policyCrds(peerAuthenticationSchema: JsonSchema, authorizationPolicySchema: JsonSchema): Record<string, unknown>[] {
  return [
    policyCrd(peerAuthenticationSchema, { kind: 'PeerAuthentication', plural: 'peerauthentications', singular: 'peerauthentication', shortNames: ['pa'], columns: [['Mode', '.spec.mtls.mode']] }),
    policyCrd(authorizationPolicySchema, { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', singular: 'authorizationpolicy', shortNames: ['ap'], columns: [['Action', '.spec.action']] }),
  ];
}
