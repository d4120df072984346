import { expect } from 'chai';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { applyPatch } from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import { decodePatch } from '@trellis/injector-webhook';
import { TestCa, injectorPort, makeTmpDir, trellisSpawn, trellisSync } from '@trellis/testkit';

type Obj = Record<string, any>;

const podReview = (uid: string): Obj => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    namespace: 'shop',
    object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] } },
  },
});

describe('trellis injector (real process, real HTTPS, curl as the client)', function () {
  const tmp = makeTmpDir('trellis-injector-');
  let ca: TestCa;
  let child: ChildProcess | undefined;
  let port = 0;
  let stderr = '';
  const certFile = join(tmp.dir, 'tls.crt');
  const keyFile = join(tmp.dir, 'tls.key');
  const caFile = join(tmp.dir, 'ca.pem');

  async function writePair(): Promise<string> {
    const leaf = await ca.issueLeaf('', { uris: [], dnsNames: ['localhost', 'trellis-injector.trellis-system.svc'] });
    writeFileSync(keyFile, leaf.key.keyPem, { mode: 0o600 });
    writeFileSync(certFile, leaf.chainPem);
    return new X509Certificate(leaf.pem).serialNumber;
  }

  function curl(args: string[], input?: string | Buffer): { status: number; body: string } {
    const r = spawnSync('curl', ['-sS', '--cacert', caFile, '-o', '-', '-w', '\n%{http_code}', ...args, `https://localhost:${port}/inject`], { input, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
    expect(r.status, r.stderr).to.equal(0);
    const cut = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(cut + 1)), body: r.stdout.slice(0, cut) };
  }

  function postJson(body: string | Buffer): { status: number; json: Obj } {
    const r = curl(['-X', 'POST', '-H', 'content-type: application/json', '--data-binary', '@-'], body);
    return { status: r.status, json: JSON.parse(r.body) as Obj };
  }

  function servedSerial(): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(caFile, 'utf8') }, () => {
        const serial = s.getPeerX509Certificate()!.serialNumber;
        s.end();
        resolve(serial);
      });
      s.on('error', reject);
    });
  }

  async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
    let last: T | undefined;
    for (let i = 0; i < 200; i++) {
      last = await probe();
      if (ok(last)) return last;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`never saw ${what}; last: ${String(last)}`);
  }

  before(async () => {
    ca = await TestCa.create('injector.test');
    writeFileSync(caFile, ca.root.pem);
    await writePair();
    // Port 0: it prints the port it bound (a port picked free here could be taken before it binds).
    child = trellisSpawn(['injector', '--listen', '127.0.0.1:0', '--cert', certFile, '--key', keyFile], { env: { ...process.env, TRELLIS_INJECTOR_RELOAD_MS: '100' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    port = await injectorPort(child).catch((err: Error) => {
      throw new Error(`${err.message}\n--- stderr ---\n${stderr}`);
    });
  });

  after(() => {
    child?.kill('SIGTERM');
    tmp.cleanup();
  });

  it('answers a Pod AdmissionReview posted by curl with the same uid and a JSONPatch that applies', () => {
    const review = podReview('9f1c-curl');
    const { status, json } = postJson(JSON.stringify(review));
    expect(status).to.equal(200);
    expect(json).to.deep.include({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
    expect(json.response).to.include({ uid: '9f1c-curl', allowed: true, patchType: 'JSONPatch' });
    const pod = applyPatch(structuredClone(review.request.object), decodePatch(json.response.patch) as never, true, false).newDocument as Obj;
    expect(pod.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar', 'web']);
  });

  const bad: Array<[string, string, number, string]> = [
    ['a body that is not JSON', '{"apiVersion": ', 400, 'TRELLIS_INJECTOR_BAD_REVIEW'],
    ['JSON that is not an AdmissionReview', '{"kind":"Pod"}', 400, 'TRELLIS_INJECTOR_BAD_REVIEW'],
    ['an AdmissionReview without uid', JSON.stringify({ ...podReview(''), request: { ...podReview('').request, uid: undefined } }), 400, 'TRELLIS_INJECTOR_BAD_REVIEW'],
  ];
  for (const [name, body, code, errorCode] of bad) {
    it(`refuses ${name} with HTTP ${code} and carries on`, () => {
      const r = postJson(body);
      expect(r.status).to.equal(code);
      expect(r.json.code).to.equal(errorCode);
      expect(postJson(JSON.stringify(podReview('after-bad'))).json.response.uid).to.equal('after-bad');
    });
  }

  it('answers a non-Pod object with allowed and no patch', () => {
    const review = podReview('svc-1');
    review.request.kind = { group: '', version: 'v1', kind: 'Service' };
    review.request.object = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } };
    expect(postJson(JSON.stringify(review)).json.response).to.deep.equal({ uid: 'svc-1', allowed: true });
  });

  it('refuses a body over 3 MiB with HTTP 413 and carries on', () => {
    const review = podReview('big');
    review.request.object.metadata.annotations = { filler: 'x'.repeat(3 * 1024 * 1024) };
    const r = postJson(JSON.stringify(review));
    expect(r.status).to.equal(413);
    expect(r.json.code).to.equal('TRELLIS_INJECTOR_TOO_LARGE');
    expect(postJson(JSON.stringify(podReview('after-big'))).json.response.uid).to.equal('after-big');
  });

  it('answers 404 for any path other than /inject', () => {
    const r = spawnSync('curl', ['-sS', '--cacert', caFile, '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${port}/mutate`], { encoding: 'utf8' });
    expect(r.stdout).to.equal('404');
  });

  it('serves a rewritten certificate without a restart, and keeps it when the next rewrite is broken', async () => {
    const before = await servedSerial();
    const next = await writePair();
    expect(next).to.not.equal(before);
    await eventually(servedSerial, (s) => s === next, `serial ${next}`);
    writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    await eventually(async () => stderr, (s) => s.includes('reload refused'), 'the refused reload logged');
    expect(await servedSerial()).to.equal(next);
    expect(postJson(JSON.stringify(podReview('after-rotation'))).json.response.uid).to.equal('after-rotation');
    expect(child!.exitCode).to.equal(null);
  });

  it('answers 405 for a GET of /inject and 200 on /healthz', () => {
    const code = (method: string, path: string): string =>
      spawnSync('curl', ['-sS', '--cacert', caFile, '-X', method, '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${port}${path}`], { encoding: 'utf8' }).stdout;
    expect(code('GET', '/inject')).to.equal('405');
    expect(code('GET', '/healthz')).to.equal('200');
  });

  it('refuses a bad --config with every problem and its code, and a bad --listen as a usage error', () => {
    const cfg = join(tmp.dir, 'bad-config.yaml');
    writeFileSync(cfg, 'image: ""\nproxyUid: root\nsurprise: 1\n');
    const r = trellisSync(['injector', '--listen', '127.0.0.1:0', '--cert', certFile, '--key', keyFile, '--config', cfg]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('TRELLIS_INJECTOR_BAD_CONFIG');
    for (const field of ['image', 'proxyUid', 'surprise']) expect(r.stderr).to.include(`${field}:`);
    expect(trellisSync(['injector', '--listen', 'nowhere', '--cert', certFile, '--key', keyFile]).status).to.equal(2);
  });

  it('prints the caBundle as one base64 line of the CA PEM', () => {
    const r = trellisSync(['injector', 'ca-bundle', '--ca-file', caFile]);
    expect(r.status, r.stderr).to.equal(0);
    expect(Buffer.from(r.stdout.trim(), 'base64').toString('utf8')).to.equal(ca.root.pem);
  });

  it('refuses to start without a serving certificate (exit 2) or with a key that does not match (exit 1)', async () => {
    expect(trellisSync(['injector', '--listen', '127.0.0.1:0']).status).to.equal(2);
    const other = await ca.issueLeaf('', { uris: [], dnsNames: ['localhost'] });
    const wrongKey = join(tmp.dir, 'wrong.key');
    writeFileSync(wrongKey, other.key.keyPem);
    chmodSync(wrongKey, 0o600);
    const good = await ca.issueLeaf('', { uris: [], dnsNames: ['localhost'] });
    const goodCert = join(tmp.dir, 'good.crt');
    writeFileSync(goodCert, good.chainPem);
    const r = trellisSync(['injector', '--listen', '127.0.0.1:0', '--cert', goodCert, '--key', wrongKey]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('TRELLIS_INJECTOR_BAD_CERT');
  });
});

describe('trellis inject (offline, real process)', () => {
  const tmp = makeTmpDir('trellis-inject-');
  after(() => tmp.cleanup());

  it('injects workloads in a multi-document file and passes other kinds through', () => {
    const input = join(tmp.dir, 'in.yaml');
    const output = join(tmp.dir, 'out.yaml');
    writeFileSync(input, [
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: web, ports: [{containerPort: 80}]}]\n',
      'apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n',
    ].join('---\n'));
    const r = trellisSync(['inject', '-f', input, '-o', output]);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.include('Deployment/web: injected (namespace-enabled)');
    const docs = parseAllDocuments(readFileSync(output, 'utf8')).map((d) => d.toJS() as Obj);
    expect(docs[0]!.spec.template.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar', 'web']);
    expect(docs[1]).to.deep.equal({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } });
    const again = trellisSync(['inject', '-f', output, '--quiet']);
    expect(again.stdout).to.equal(readFileSync(output, 'utf8'));
  });

  it('reads stdin with -f - and names the document and line of bad YAML', () => {
    const ok = trellisSync(['inject', '-f', '-', '--quiet'], { input: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: a}]}\n' });
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.include('trellis-sidecar');
    const bad = trellisSync(['inject', '-f', '-'], { input: 'kind: ConfigMap\n---\nkind: [unclosed\n' });
    expect(bad.status).to.equal(1);
    expect(bad.stderr).to.match(/<stdin>: document 2 .*line/);
    expect(bad.stderr).to.include('TRELLIS_INJECTOR_BAD_MANIFEST');
  });

  it('names the file, document and annotation when an annotation is malformed', () => {
    const input = join(tmp.dir, 'bad.yaml');
    writeFileSync(input, 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidecar.trellis.dev/upstreams: "payments"}\nspec: {containers: [{name: a, image: a}]}\n');
    const r = trellisSync(['inject', '-f', input]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('bad.yaml: document 1 (Pod p)');
    expect(r.stderr).to.include('TRELLIS_INJECTOR_BAD_ANNOTATION');
  });

  it('is a usage error (exit 2) without -f', () => {
    expect(trellisSync(['inject']).status).to.equal(2);
  });
});
