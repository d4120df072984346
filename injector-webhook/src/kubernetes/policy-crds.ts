/**
 * CustomResourceDefinitions for `security.trellis.dev/v1` PeerAuthentication
 * and AuthorizationPolicy, generated from the policy JSON Schemas in
 * `shared/` so the cluster validates exactly what the control plane accepts.
 *
 * JSON Schema → Kubernetes structural schema: `const` becomes a one-value
 * `enum`; `additionalProperties: false` is dropped (the API server prunes
 * unknown fields of a structural schema instead); `propertyNames.pattern`
 * becomes a CEL rule on the map keys; `$id`/`$schema`/`title` are dropped.
 *
 * `status` has a schema: the conditions the control plane writes (type
 * `Accepted`, reason `Valid` or `Invalid`, the text `trellis validate`
 * prints, observedGeneration), served through the status subresource so a
 * status write never touches spec and a spec write never clears status.
 *
 * Some of the validator's semantic rules are added as CEL rules where a
 * structural schema can say them (PeerAuthentication: portLevelMtls keys are
 * ports 1-65535, and portLevelMtls needs a selector with labels). CEL runs
 * on Kubernetes 1.25+ only; the validating webhook (`/validate`, the same
 * validator as `trellis validate`) covers every rule on every version.
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

/** The status the control plane writes: metav1.Condition entries, keyed by type. */
export const POLICY_STATUS_SCHEMA: JsonSchema = Object.freeze({
  type: 'object',
  description: 'What the Trellis control plane found: condition Accepted (reason Valid, or Invalid with the same text trellis validate prints).',
  properties: {
    conditions: {
      type: 'array',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: {
        type: 'object',
        required: ['type', 'status', 'reason', 'message', 'lastTransitionTime'],
        properties: {
          type: { type: 'string', maxLength: 316 },
          status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
          reason: { type: 'string', maxLength: 1024 },
          message: { type: 'string', maxLength: 32768 },
          observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
          lastTransitionTime: { type: 'string', format: 'date-time' },
        },
      },
    },
  },
}) as JsonSchema;

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
            { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status' },
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
                status: JSON.parse(JSON.stringify(POLICY_STATUS_SCHEMA)) as JsonSchema,
              },
            },
          },
        },
      ],
    },
  };
}

/** CEL rules on PeerAuthentication's spec: the semantic checks of policy-semantics.ts that CEL can say. */
export const PEER_AUTHENTICATION_RULES = Object.freeze({
  spec: [
    {
      rule: '!has(self.portLevelMtls) || (has(self.selector) && has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0)',
      message: 'portLevelMtls requires selector: a mesh- or namespace-wide policy cannot set per-port modes',
    },
  ],
  portLevelMtls: [{ rule: "self.all(k, k.matches('^[0-9]{1,5}$') && int(k) >= 1 && int(k) <= 65535)", message: 'keys must be port numbers 1-65535' }],
});

/**
 * Most ports a PeerAuthentication's portLevelMtls may name in the CRD: bounds
 * the CEL cost estimate (an unbounded map makes the API server refuse the
 * rule); far above any workload's port count.
 */
export const MAX_PORT_LEVEL_MTLS = 256;

/** Both policy CRDs, from the PeerAuthentication and AuthorizationPolicy schemas. */
export function policyCrds(peerAuthenticationSchema: JsonSchema, authorizationPolicySchema: JsonSchema): Record<string, unknown>[] {
  const pa = policyCrd(peerAuthenticationSchema, { kind: 'PeerAuthentication', plural: 'peerauthentications', singular: 'peerauthentication', shortNames: ['pa'], columns: [['Mode', '.spec.mtls.mode']] });
  const spec = (((pa.spec as JsonSchema).versions as JsonSchema[])[0]!.schema as { openAPIV3Schema: { properties: { spec: JsonSchema } } }).openAPIV3Schema.properties.spec;
  spec['x-kubernetes-validations'] = PEER_AUTHENTICATION_RULES.spec.map((r) => ({ ...r }));
  const plm = (spec.properties as Record<string, JsonSchema>).portLevelMtls!;
  plm.maxProperties = MAX_PORT_LEVEL_MTLS;
  plm['x-kubernetes-validations'] = PEER_AUTHENTICATION_RULES.portLevelMtls.map((r) => ({ ...r }));
  return [
    pa,
    policyCrd(authorizationPolicySchema, { kind: 'AuthorizationPolicy', plural: 'authorizationpolicies', singular: 'authorizationpolicy', shortNames: ['ap'], columns: [['Action', '.spec.action']] }),
  ];
}
