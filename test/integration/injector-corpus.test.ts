import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { applyPatch } from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import { silentLogger } from '@trellis/shared';
import {
  DEFAULT_INJECTOR_CONFIG,
  STATUS_ANNOTATION,
  decodePatch,
  encodePatch,
  injectManifests,
  TEMPLATE_PATHS,
  injectPod,
  startWebhookServer,
  validateServingPair,
  type CertSource,
  type JsonPatchOp,
  type WebhookServer,
} from '@trellis/injector-webhook';
import { CORPORA, corpusPath, describeWith, TestCa } from '@trellis/testkit';
import { validateK8sObject } from './injector-k8s-schema';

type Obj = Record<string, any>;

const ISTIO = corpusPath('istio-inject');
const ADMISSION = corpusPath('k8s-admission');
const OUR = new Set(['trellis-sidecar', 'trellis-init']);
// The same table the offline injector uses, so the corpus test walks exactly the kinds it injects.
const TEMPLATE_PATH = TEMPLATE_PATHS;

function mustExist(path: string): void {
  // A file the corpus manifest names but the folder lacks is a broken corpus, not a missing one: fail.
  if (!existsSync(path)) throw new Error(`corpus file missing: ${path}`);
}

function workloads(doc: Obj): Obj[] {
  if (doc?.kind === 'List') return (doc.items ?? []).flatMap(workloads);
  return doc && TEMPLATE_PATH[doc.kind] ? [doc] : [];
}

function templateOf(obj: Obj): Obj {
  let t = obj;
  for (const k of TEMPLATE_PATH[obj.kind]!) t = t[k];
  return t;
}

/** Applies with validation on; fast-json-patch throws on any op that does not apply. */
function applyStrict(doc: Obj, patch: JsonPatchOp[]): Obj {
  return applyPatch(structuredClone(doc), patch as never, true, false).newDocument as Obj;
}

/** Every pre-existing container is still there, in order, unchanged except for probes rewritten to /app-health. */
function expectUserContainersKept(before: Obj, after: Obj, where: string): void {
  for (const list of ['containers', 'initContainers', 'ephemeralContainers']) {
    const orig: Obj[] = before.spec[list] ?? [];
    const now: Obj[] = (after.spec[list] ?? []).filter((c: Obj) => !OUR.has(c.name));
    expect(now.map((c) => c.name), `${where}: ${list}`).to.deep.equal(orig.map((c) => c.name));
    orig.forEach((c, i) => {
      const n = now[i]!;
      for (const key of new Set([...Object.keys(c), ...Object.keys(n)])) {
        if (['livenessProbe', 'readinessProbe', 'startupProbe'].includes(key) && c[key]?.httpGet && n[key]?.httpGet?.path?.startsWith('/app-health/')) continue;
        expect(n[key], `${where}: ${list}/${c.name}.${key}`).to.deep.equal(c[key]);
      }
    });
  }
  const sidecars = [...(after.spec.containers ?? []), ...(after.spec.initContainers ?? [])].filter((c: Obj) => c.name === 'trellis-sidecar');
  expect(sidecars, `${where}: exactly one sidecar`).to.have.length(1);
  for (const v of before.spec.volumes ?? []) expect(after.spec.volumes, `${where}: volume ${v.name} kept`).to.deep.include(v);
  for (const [k, v] of Object.entries(before.metadata?.annotations ?? {})) expect(after.metadata.annotations[k]).to.equal(v);
}

describeWith(CORPORA, 'injection over the Istio injection corpus', () => {
  const manifest = JSON.parse(readFileSync(join(ISTIO, 'manifest.json'), 'utf8')) as { cases: Array<{ input: string; expected: string }> };

  it('has the corpus cases', () => {
    expect(manifest.cases.length).to.be.greaterThan(100);
  });

  for (const c of manifest.cases) {
    const file = join(ISTIO, c.input);
    it(`${c.input} (${c.expected})`, () => {
      mustExist(file);
      const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Obj).filter((d) => d);
      const items = docs.flatMap(workloads);
      if (c.expected === 'passthrough_no_pod_template') {
        expect(items).to.have.length(0);
        const out = injectManifests(readFileSync(file, 'utf8'), c.input, DEFAULT_INJECTOR_CONFIG);
        expect(parseAllDocuments(out.yaml).map((d) => d.toJS())).to.deep.equal(docs);
        return;
      }
      expect(items.length, 'a workload to inject').to.be.greaterThan(0);
      for (const obj of items) {
        const where = `${c.input} ${obj.kind}/${obj.metadata?.name}`;
        const template = templateOf(obj);
        const result = injectPod(template, DEFAULT_INJECTOR_CONFIG, { namespace: obj.metadata?.namespace });
        if (c.expected === 'no_injection') {
          expect(result.injected, where).to.equal(false);
          expect(result.patch, where).to.deep.equal([]);
          continue;
        }
        // 'injected', and 'error' cases: Istio rejects malformed traffic.sidecar.istio.io/* annotations,
        // which Trellis does not read; either way the result must be a valid, injected pod.
        expect(result.injected, `${where}: ${result.reason}`).to.equal(true);
        const after = applyStrict(template, result.patch);
        expectUserContainersKept(template, after, where);
        expect(injectPod(after, DEFAULT_INJECTOR_CONFIG).patch, `${where}: second pass`).to.deep.equal([]);
        const whole = structuredClone(obj);
        const path = TEMPLATE_PATH[obj.kind]!;
        if (path.length === 0) Object.assign(whole, after);
        else {
          let parent = whole;
          for (const k of path.slice(0, -1)) parent = parent[k];
          parent[path[path.length - 1]!] = after;
        }
        if (obj.kind !== 'DeploymentConfig') validateK8sObject(whole, where);
      }
    });
  }
});

describeWith(CORPORA, 'injector webhook over HTTPS with the Kubernetes admission corpus', () => {
  let server: WebhookServer;
  let ca: TestCa;
  let agent: Agent;

  before(async () => {
    ca = await TestCa.create('corpus.test');
    const leaf = await ca.issueLeaf('', { uris: [], dnsNames: ['localhost'] });
    const pair = validateServingPair(leaf.chainPem, leaf.key.keyPem, 'test');
    const certs: CertSource = { current: () => pair, onChange: () => undefined, close: () => undefined };
    server = await startWebhookServer('127.0.0.1', 0, { config: DEFAULT_INJECTOR_CONFIG, certs, logger: silentLogger });
    agent = new Agent({ keepAlive: true, ca: ca.root.pem, servername: 'localhost' });
  });

  after(async () => {
    agent?.destroy();
    await server?.close();
  });

  function post(body: unknown): Promise<{ status: number; json: Obj }> {
    const data = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: server.address().port, path: '/inject', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Obj }));
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  const manifest = JSON.parse(readFileSync(join(ADMISSION, 'manifest.json'), 'utf8')) as { kubewarden_requests: Array<{ file: string; summary: Obj }> };
  for (const entry of manifest.kubewarden_requests) {
    it(`answers ${entry.file.split('/')[1]} (${entry.summary.operation} ${entry.summary.kind.kind})`, async () => {
      const req = JSON.parse(readFileSync(join(ADMISSION, entry.file), 'utf8')) as Obj;
      const { status, json } = await post({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req });
      expect(status).to.equal(200);
      expect(json.apiVersion).to.equal('admission.k8s.io/v1');
      expect(json.kind).to.equal('AdmissionReview');
      expect(json.response.uid).to.equal(req.uid);
      expect(json.response.allowed).to.equal(true);
      if (req.operation === 'CREATE' && req.kind.kind === 'Pod') {
        expect(json.response.patchType).to.equal('JSONPatch');
        const after = applyStrict(req.object, decodePatch(json.response.patch));
        expectUserContainersKept(req.object, after, entry.file);
        expect(after.metadata.annotations[STATUS_ANNOTATION]).to.be.a('string');
        validateK8sObject({ apiVersion: 'v1', kind: 'Pod', ...after }, entry.file);
      } else {
        expect(json.response).to.not.have.property('patch');
        expect(json.response).to.not.have.property('patchType');
      }
    });
  }

  it('allows the all-fields AdmissionReview fixture (not a Pod) and echoes its uid', async () => {
    const review = JSON.parse(readFileSync(join(ADMISSION, 'kubernetes-api-testdata', 'admission.k8s.io.v1.AdmissionReview.json'), 'utf8')) as Obj;
    const { status, json } = await post(review);
    expect(status).to.equal(200);
    expect(json.response).to.deep.equal({ uid: review.request.uid, allowed: true });
  });

  it('refuses the v1beta1 fixture with HTTP 400 rather than answering in the wrong version', async () => {
    const review = readFileSync(join(ADMISSION, 'kubernetes-api-testdata', 'admission.k8s.io.v1beta1.AdmissionReview.json'), 'utf8');
    const { status, json } = await post(review);
    expect(status).to.equal(400);
    expect(json.code).to.equal('TRELLIS_INJECTOR_BAD_REVIEW');
  });

  it('keeps every field of the all-fields Pod fixture', async () => {
    const pod = JSON.parse(readFileSync(join(ADMISSION, 'kubernetes-api-testdata', 'core.v1.Pod.json'), 'utf8')) as Obj;
    // The fixture sets hostNetwork, which we never inject; turn it off to exercise the patch on every other field.
    pod.spec.hostNetwork = false;
    const { json } = await post({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'all-fields', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'ns', object: pod } });
    expect(json.response.allowed).to.equal(true);
    const after = applyStrict(pod, decodePatch(json.response.patch));
    expectUserContainersKept(pod, after, 'core.v1.Pod.json');
    const { containers, initContainers, volumes, ...restSpec } = after.spec;
    const { containers: c0, initContainers: i0, volumes: v0, ...origSpec } = pod.spec;
    void containers; void initContainers; void volumes; void c0; void i0; void v0;
    expect(restSpec).to.deep.equal(origSpec);
    const { annotations, ...restMeta } = after.metadata;
    const { annotations: a0, ...origMeta } = pod.metadata;
    void annotations; void a0;
    expect(restMeta).to.deep.equal(origMeta);
  });

  it('injects the pod template of the all-fields Deployment fixture offline', () => {
    const text = readFileSync(join(ADMISSION, 'kubernetes-api-testdata', 'apps.v1.Deployment.json'), 'utf8');
    const dep = JSON.parse(text) as Obj;
    dep.spec.template.spec.hostNetwork = false;
    const out = injectManifests(JSON.stringify(dep), 'apps.v1.Deployment.json', DEFAULT_INJECTOR_CONFIG);
    expect(out.reports[0]).to.include({ kind: 'Deployment', injected: true });
    const after = parseAllDocuments(out.yaml)[0]!.toJS() as Obj;
    expectUserContainersKept(dep.spec.template, after.spec.template, 'apps.v1.Deployment.json');
  });

  it('agrees with the Kubernetes docs on the base64 JSONPatch encoding', async () => {
    const docs = JSON.parse(readFileSync(join(ADMISSION, 'docs-examples.json'), 'utf8')) as Obj;
    const vector = docs.response_examples.find((e: Obj) => e.review.response.patchType === 'JSONPatch');
    expect(decodePatch(vector.review.response.patch)).to.deep.equal(JSON.parse(vector.decoded_patch_text));
    expect(Buffer.from(vector.review.response.patch, 'base64').toString('utf8')).to.equal(vector.decoded_patch_text);
    expect(decodePatch(encodePatch(JSON.parse(vector.decoded_patch_text)))).to.deep.equal(JSON.parse(vector.decoded_patch_text));
    // The docs' request example is an UPDATE of a Scale subresource: allowed, untouched.
    const { status, json } = await post(docs.request_example.review);
    expect(status).to.equal(200);
    expect(json.response).to.deep.equal({ uid: docs.request_example.review.request.uid, allowed: true });
  });
});
