/**
 * `kubectl apply` of policies against a real API server with the shipped CRDs
 * and the shipped ValidatingWebhookConfiguration, served by a real injector
 * process (registered by url: the API server cannot dial a Service here):
 * what `trellis validate` refuses, the API server refuses, with the same
 * field path, reason and code.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ProcessGroup, REPO_ROOT, kubeApiServerAvailability, makeTmpDir, optionalDependency, requireKubeApiServer, skipUnless, startKubeApiServer, trellisSync, waitFor, type KubeApiServer } from '@trellis/testkit';

/** The optional Kubernetes 1.36 CRD server (CEL rules); `.ci/run` builds it when its cache lacks it and requires it. */
const CRD_SERVER_136 = optionalDependency({
  name: 'the Kubernetes 1.36 CRD server',
  requireEnv: 'TRELLIS_REQUIRE_K8S_CRD_136',
  probe: () => {
    const a = kubeApiServerAvailability();
    if (!a.available) return a.reason;
    const bin = join(a.bin, 'apiextensions-apiserver-1.36');
    return existsSync(bin) ? undefined : `no ${bin} (build it with ${join(a.scripts, 'build-apiext-1.36.sh')}, ~8-15 min the first time)`;
  },
});

type Obj = Record<string, any>;

const PA = (name: string, spec: string, apiVersion = 'security.trellis.dev/v1'): string =>
  `apiVersion: ${apiVersion}\nkind: PeerAuthentication\nmetadata:\n  name: ${name}\n  namespace: shop\nspec:\n${spec}`;

const BAD_PORT = PA('bad-port', '  selector: {matchLabels: {app: web}}\n  portLevelMtls:\n    "99999": {mode: STRICT}\n');
const NO_SELECTOR = PA('no-selector', '  mtls: {mode: STRICT}\n  portLevelMtls:\n    "8080": {mode: DISABLE}\n');
const GOOD = PA('good', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    "8080": {mode: PERMISSIVE}\n');

describe('policy validating webhook on a real API server', function () {
  this.timeout(120_000);
  const tmp = makeTmpDir('trellis-policy-webhook-');
  const procs = new ProcessGroup(tmp.dir);
  let k8s: KubeApiServer;
  let injector: ChildProcess;

  /** The stderr lines `trellis validate` prints for `yaml`, reduced to what a webhook can repeat: path, reason, code. */
  function validateErrors(yaml: string, name: string): string[] {
    const file = join(tmp.dir, `${name}.yaml`);
    writeFileSync(file, yaml);
    const r = trellisSync(['validate', file]);
    expect(r.status, 'trellis validate refuses it').to.equal(1);
    return r.stderr
      .split('\n')
      .filter((l) => l.includes('[TRELLIS_POLICY_'))
      .map((l) => l.replace(/^.*? document \d+ /, ''));
  }

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the policy webhook tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    // 1.20 knows no x-kubernetes-validations (CEL, 1.25+): kubectl's client-side check refuses the field, the server drops it.
    k8s.kubectlOk(['apply', '--validate=false', '-f', join(REPO_ROOT, 'deploy', 'crds')]);
    k8s.kubectlOk(['create', 'namespace', 'shop']);
    // The webhook's serving pair from the script's PKI: IP SAN 127.0.0.1, signed by webhook-ca.pem.
    injector = procs.spawn(['injector', '--listen', '127.0.0.1:0', '--cert', join(k8s.pkiDir, 'webhook.crt'), '--key', join(k8s.pkiDir, 'webhook.key'), '--config', join(REPO_ROOT, 'deploy', 'injector-config.yaml')]);
    let out = '';
    injector.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor('the injector to listen', () => /listening on https:\/\/[^:]+:(\d+)/.test(out), 15_000);
    const port = Number(/listening on https:\/\/[^:]+:(\d+)/.exec(out)![1]);
    // The shipped configuration, pointed at the local process by url instead of the Service.
    const vwc = parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'validating-webhook.yaml'), 'utf8')) as Obj;
    const caBundle = readFileSync(join(k8s.pkiDir, 'webhook-ca.pem')).toString('base64');
    for (const w of vwc.webhooks) w.clientConfig = { url: `https://127.0.0.1:${port}/validate`, caBundle };
    k8s.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(vwc) });
    // Istio's group, as a cluster with Istio's CRDs has it (schema-less here: the webhook decides).
    for (const [kind, plural] of [['PeerAuthentication', 'peerauthentications'], ['AuthorizationPolicy', 'authorizationpolicies']]) {
      const schema = { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } };
      k8s.kubectlOk(['apply', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'apiextensions.k8s.io/v1',
          kind: 'CustomResourceDefinition',
          metadata: { name: `${plural}.security.istio.io` },
          spec: { group: 'security.istio.io', scope: 'Namespaced', names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` }, versions: [{ name: 'v1', served: true, storage: true, schema }, { name: 'v1beta1', served: true, storage: false, schema }] },
        }),
      });
    }
    await waitFor('the CRDs to be established', () => k8s.kubectl(['wait', '--for=condition=Established', '--timeout=1s', 'crd', '--all']).status === 0, 20_000, 200);
  });
  afterEach(function () {
    if (this.currentTest?.state === 'failed') procs.dumpLogs();
  });
  after(async () => {
    procs.killAll();
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should store a valid PeerAuthentication', () => {
    expect(k8s.kubectl(['apply', '-f', '-'], { input: GOOD }).stdout).to.match(/peerauthentication.security.trellis.dev\/good created/);
  });

  for (const [name, yaml, expected] of [
    ['bad-port', BAD_PORT, /spec\.portLevelMtls\["99999"\]: port must be between 1-65535, got 99999 \[TRELLIS_POLICY_INVALID_VALUE\]/],
    ['no-selector', NO_SELECTOR, /spec\.portLevelMtls: portLevelMtls requires selector.*\[TRELLIS_POLICY_CONFLICTING_FIELDS\]/],
  ] as const) {
    it(`Should refuse at kubectl apply what trellis validate refuses (${name}), with the same field, reason and code`, () => {
      const r = k8s.kubectl(['apply', '-f', '-'], { input: yaml });
      expect(r.status, r.stdout).to.not.equal(0);
      expect(r.stderr).to.match(/admission webhook "policy.security.trellis.dev" denied the request/);
      expect(r.stderr, 'the object name stands in for the file').to.include(`PeerAuthentication shop/${name}`);
      expect(r.stderr).to.match(expected);
      for (const line of validateErrors(yaml, name)) expect(r.stderr, 'every error trellis validate prints').to.include(line);
      expect(k8s.kubectl(['-n', 'shop', 'get', 'peerauthentication.security.trellis.dev', name]).status, 'nothing stored').to.not.equal(0);
    });
  }

  it('Should refuse an update that makes a stored policy invalid, and keep the stored one', () => {
    const r = k8s.kubectl(['apply', '-f', '-'], { input: GOOD.replace('"8080": {mode: PERMISSIVE}', '"0": {mode: PERMISSIVE}') });
    expect(r.status).to.not.equal(0);
    expect(r.stderr).to.match(/port must be between 1-65535, got 0/);
    const stored = JSON.parse(k8s.kubectlOk(['-n', 'shop', 'get', 'peerauthentication.security.trellis.dev', 'good', '-o', 'json'])) as Obj;
    expect(Object.keys(stored.spec.portLevelMtls)).to.deep.equal(['8080']);
  });

  it('Should check security.istio.io v1 and v1beta1 policies with the same validator', () => {
    for (const v of ['security.istio.io/v1', 'security.istio.io/v1beta1']) {
      const r = k8s.kubectl(['apply', '-f', '-'], { input: PA('istio-bad', '  selector: {matchLabels: {app: web}}\n  portLevelMtls:\n    "99999": {mode: STRICT}\n', v) });
      expect(r.status, v).to.not.equal(0);
      expect(r.stderr).to.match(/admission webhook "policy.security.istio.io" denied the request.*port must be between 1-65535/);
    }
    const ok = k8s.kubectl(['apply', '-f', '-'], { input: PA('istio-good', '  mtls: {mode: STRICT}\n', 'security.istio.io/v1beta1') });
    expect(ok.status, ok.stderr).to.equal(0);
  });

  it('Should refuse the same PeerAuthentications by the CRD\'s CEL rules alone on the 1.36 CRD server', async function () {
    skipUnless(this, CRD_SERVER_136);
    const kubeconfig = await k8s.startCrdServer136();
    expect(kubeconfig, 'the 1.36 CRD server started').to.be.a('string');
    // That server has no /api and no webhooks: only the CRD's own schema and CEL rules decide.
    const raw = (args: string[], input: string): { status: number; out: string } => {
      const file = join(tmp.dir, `raw-${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(file, input);
      const r = k8s.kubectl([`--kubeconfig=${kubeconfig}`, ...args, '-f', file]);
      return { status: r.status, out: r.stdout + r.stderr };
    };
    for (const f of ['peerauthentications', 'authorizationpolicies']) {
      const r = raw(['create', '--raw', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions'], JSON.stringify(parseYaml(readFileSync(join(REPO_ROOT, 'deploy', 'crds', `${f}.yaml`), 'utf8'))));
      expect(r.status, `the CRD (with its CEL rules, within the cost budget) is accepted: ${r.out}`).to.equal(0);
    }
    const create = (yaml: string): { status: number; out: string } =>
      raw(['create', '--raw', '/apis/security.trellis.dev/v1/namespaces/shop/peerauthentications'], JSON.stringify(parseYaml(yaml)));
    await waitFor('the CRD to serve', () => create(GOOD).status === 0, 20_000, 300);
    expect(create(BAD_PORT).out).to.match(/spec.portLevelMtls: Invalid value: keys must be port numbers 1-65535/);
    expect(create(NO_SELECTOR).out).to.match(/portLevelMtls requires selector/);
  });

  it('Should refuse an AuthorizationPolicy trellis validate refuses (DENY without rules)', () => {
    const yaml = 'apiVersion: security.trellis.dev/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-nothing\n  namespace: shop\nspec:\n  action: DENY\n';
    const r = k8s.kubectl(['apply', '-f', '-'], { input: yaml });
    expect(r.status).to.not.equal(0);
    for (const line of validateErrors(yaml, 'deny-nothing')) expect(r.stderr).to.include(line);
  });
});
