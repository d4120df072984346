import { expect } from 'chai';
import fc from 'fast-check';
import { applyPatch } from 'fast-json-patch';
import { DEFAULT_INJECTOR_CONFIG, STATUS_ANNOTATION, buildInjectorConfig, injectPod } from '../src';

type Obj = Record<string, any>;

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
/** Annotation/label keys with the characters JSON pointers must escape. */
const key = fc.oneof(fc.stringMatching(/^[a-z]{1,6}$/), fc.stringMatching(/^[a-z.]{1,8}\/[a-z~]{1,6}$/), fc.constant('a~1b/c~0d'));
const port = fc.integer({ min: 1, max: 14999 });
const probe = (ports: Array<{ name?: string; containerPort: number }>): fc.Arbitrary<Obj | undefined> =>
  fc.oneof(
    fc.constant(undefined),
    fc.record({ httpGet: fc.record({ path: fc.constant('/h'), port: fc.oneof(port, ...(ports.length ? [fc.constantFrom(...ports.map((p) => p.name ?? p.containerPort))] : [])) }) }),
    fc.record({ tcpSocket: fc.record({ port }) }),
  );
const container = fc
  .array(fc.record({ name: fc.option(fc.stringMatching(/^(http|grpc|tcp)(-[a-z]{1,4})?$/), { nil: undefined }), containerPort: port, protocol: fc.constantFrom(undefined, 'TCP', 'UDP') }), { maxLength: 3 })
  .chain((ports) =>
    fc.record({
      name,
      image: fc.constant('img'),
      ports: fc.constantFrom(ports.map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined))), undefined),
      livenessProbe: probe(ports),
      readinessProbe: probe(ports),
    }),
  )
  .map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as Obj);

const podArb = fc
  .record({
    metadata: fc.oneof(
      fc.constant(undefined),
      fc.record({ name: fc.option(name, { nil: undefined }), labels: fc.option(fc.dictionary(key, name, { maxKeys: 3 }), { nil: undefined }), annotations: fc.option(fc.dictionary(key, name, { maxKeys: 3 }), { nil: undefined }) }),
    ),
    containers: fc.uniqueArray(container, { minLength: 1, maxLength: 3, selector: (c) => c.name }),
    initContainers: fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant([]), fc.constant([{ name: 'setup', image: 'i' }])),
    volumes: fc.oneof(fc.constant(undefined), fc.constant([]), fc.constant([{ name: 'data', emptyDir: {} }])),
    native: fc.boolean(),
  })
  .map(({ metadata, containers, initContainers, volumes, native }) => {
    const spec: Obj = { containers };
    if (initContainers !== undefined) spec.initContainers = initContainers;
    if (volumes !== undefined) spec.volumes = volumes;
    const pod: Obj = { spec };
    if (metadata !== undefined) pod.metadata = Object.fromEntries(Object.entries(metadata).filter(([, v]) => v !== undefined));
    // Keep the generator away from our own opt-out keys, which are tested on their own.
    for (const m of ['labels', 'annotations']) if (pod.metadata?.[m]) for (const k of Object.keys(pod.metadata[m])) if (k.includes('inject') || k.includes('upstreams') || k.includes('exclude')) delete pod.metadata[m][k];
    return { pod, native };
  });

describe('injectPod over generated pods', () => {
  it('always produces a patch that applies with validation, keeps the pod\'s own parts, and is idempotent', () => {
    fc.assert(
      fc.property(podArb, ({ pod, native }) => {
        const config = native ? buildInjectorConfig({ nativeSidecar: true }) : DEFAULT_INJECTOR_CONFIG;
        const result = injectPod(pod, config);
        expect(result.injected).to.equal(true);
        const after = applyPatch(structuredClone(pod), result.patch as never, true, false).newDocument as Obj;
        const apps = after.spec.containers.filter((c: Obj) => c.name !== 'trellis-sidecar');
        expect(apps.map((c: Obj) => c.name)).to.deep.equal(pod.spec.containers.map((c: Obj) => c.name));
        apps.forEach((c: Obj, i: number) => {
          const { livenessProbe: l1, readinessProbe: r1, ...rest } = c;
          const { livenessProbe: l0, readinessProbe: r0, ...orig } = pod.spec.containers[i];
          expect(rest).to.deep.equal(orig);
          for (const [now, was] of [[l1, l0], [r1, r0]]) if (!now?.httpGet?.path?.startsWith('/app-health/')) expect(now).to.deep.equal(was);
        });
        for (const [k, v] of Object.entries((pod.metadata?.annotations ?? {}) as Obj)) expect(after.metadata.annotations[k]).to.equal(v);
        expect(after.metadata.annotations[STATUS_ANNOTATION]).to.be.a('string');
        const sidecars = [...after.spec.containers, ...(after.spec.initContainers ?? [])].filter((c: Obj) => c.name === 'trellis-sidecar');
        expect(sidecars).to.have.length(1);
        expect(injectPod(after, config).patch).to.deep.equal([]);
      }),
      { numRuns: 300 },
    );
  });
});
