import { expect } from 'chai';
import { applyPatch } from 'fast-json-patch';
import { DEFAULT_INJECTOR_CONFIG, decodePatch, encodePatch, reviewAdmission } from '../src';

type Obj = Record<string, any>;

function review(request: Obj): Obj {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request };
}

const podObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { app: 'p' } }, spec: { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 80 }] }] } };
const podCreate = { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'shop', object: podObject };

describe('AdmissionReview handling', () => {
  it('answers a Pod CREATE with the same uid, allowed, and a base64 JSONPatch that applies', () => {
    const out = reviewAdmission(review(podCreate), DEFAULT_INJECTOR_CONFIG);
    const res = out.review.response;
    expect(out.review).to.include({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
    expect(res).to.include({ uid: 'u-1', allowed: true, patchType: 'JSONPatch' });
    const patched = applyPatch(structuredClone(podObject), decodePatch(res.patch!) as never, true, false).newDocument as Obj;
    expect(patched.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar', 'app']);
    expect(out).to.include({ outcome: 'injected', reason: 'namespace-enabled' });
  });

  it('allows non-Pod kinds and non-CREATE operations without a patch', () => {
    for (const req of [
      { ...podCreate, kind: { group: 'apps', version: 'v1', kind: 'Deployment' } },
      { ...podCreate, operation: 'DELETE', object: null, oldObject: podObject },
      { ...podCreate, operation: 'UPDATE' },
    ]) {
      const res = reviewAdmission(review(req), DEFAULT_INJECTOR_CONFIG).review.response;
      expect(res).to.deep.equal({ uid: 'u-1', allowed: true });
    }
  });

  it('allows an opted-out pod without a patch and says why', () => {
    const obj = { ...podObject, metadata: { name: 'p', labels: { 'sidecar.trellis.dev/inject': 'false' } } };
    const out = reviewAdmission(review({ ...podCreate, object: obj }), DEFAULT_INJECTOR_CONFIG);
    expect(out.review.response.patch).to.equal(undefined);
    expect(out.review.response.allowed).to.equal(true);
    expect(out.reason).to.equal('pod-label-false');
  });

  it('denies a pod it cannot inject, with a 400 status naming the problem (fail closed)', () => {
    const obj = { ...podObject, metadata: { name: 'p', annotations: { 'sidecar.trellis.dev/upstreams': 'nope' } } };
    const res = reviewAdmission(review({ ...podCreate, object: obj }), DEFAULT_INJECTOR_CONFIG).review.response;
    expect(res.allowed).to.equal(false);
    expect(res.status?.code).to.equal(400);
    expect(res.status?.message).to.include('TRELLIS_INJECTOR_BAD_ANNOTATION');
  });

  const bad: Array<[string, unknown]> = [
    ['an array', []],
    ['another kind', { apiVersion: 'admission.k8s.io/v1', kind: 'Pod' }],
    ['v1beta1', { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: podCreate }],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }],
    ['no uid', review({ ...podCreate, uid: undefined })],
  ];
  for (const [name, body] of bad) {
    it(`refuses ${name} with TRELLIS_INJECTOR_BAD_REVIEW`, () => {
      expect(() => reviewAdmission(body, DEFAULT_INJECTOR_CONFIG)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_REVIEW');
    });
  }

  it('encodes patches as base64 of the JSON text and decodes them back', () => {
    const ops = [{ op: 'add' as const, path: '/spec/replicas', value: 3 }];
    expect(encodePatch(ops)).to.equal(Buffer.from('[{"op":"add","path":"/spec/replicas","value":3}]').toString('base64'));
    expect(decodePatch(encodePatch(ops))).to.deep.equal(ops);
  });
});
