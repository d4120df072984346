import { expect } from 'chai';
import { applyPatch, deepClone } from 'fast-json-patch';
import {
  DEFAULT_INJECTOR_CONFIG,
  STATUS_ANNOTATION,
  buildInjectorConfig,
  decideInjection,
  asPodLike,
  escapePointerToken,
  injectPod,
  parseUpstreams,
  planInboundPorts,
  type InjectorConfig,
  type JsonPatchOp,
} from '../src';

type Obj = Record<string, any>;

function pod(over: { labels?: Obj; annotations?: Obj | null; spec?: Obj; metadata?: Obj | null } = {}): Obj {
  const metadata: Obj | null =
    over.metadata !== undefined
      ? over.metadata
      : { name: 'web-1', namespace: 'shop', labels: { app: 'web', ...(over.labels ?? {}) }, ...(over.annotations === null ? {} : { annotations: over.annotations ?? {} }) };
  const p: Obj = {
    apiVersion: 'v1',
    kind: 'Pod',
    spec: {
      serviceAccountName: 'web',
      containers: [{ name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9090 }] }],
      ...(over.spec ?? {}),
    },
  };
  if (metadata !== null) p.metadata = metadata;
  return p;
}

function apply(p: Obj, patch: JsonPatchOp[]): Obj {
  return applyPatch(deepClone(p), patch as never, true, false).newDocument as Obj;
}

function injected(p: Obj, config: InjectorConfig = DEFAULT_INJECTOR_CONFIG): Obj {
  const r = injectPod(p, config);
  expect(r.injected, r.reason).to.equal(true);
  return apply(p, r.patch);
}

function sidecarOf(p: Obj): Obj {
  return [...(p.spec.containers ?? []), ...(p.spec.initContainers ?? [])].find((c: Obj) => c.name === 'trellis-sidecar');
}

describe('injection decision', () => {
  const cases: Array<[string, Obj, 'enabled' | 'disabled', boolean, string]> = [
    ['injects in an enabled namespace by default', pod(), 'enabled', true, 'namespace-enabled'],
    ['does not inject in a disabled namespace by default', pod(), 'disabled', false, 'namespace-disabled'],
    ['lets the pod label opt in inside a disabled namespace', pod({ labels: { 'sidecar.trellis.dev/inject': 'true' } }), 'disabled', true, 'pod-label-true'],
    ['lets the pod annotation opt out inside an enabled namespace', pod({ annotations: { 'sidecar.trellis.dev/inject': 'false' } }), 'enabled', false, 'annotation-false'],
    ['lets the label win over the annotation', pod({ labels: { 'sidecar.trellis.dev/inject': 'false' }, annotations: { 'sidecar.trellis.dev/inject': 'true' } }), 'enabled', false, 'pod-label-false'],
    ['honours Istio\'s sidecar.istio.io/inject opt-out annotation', pod({ annotations: { 'sidecar.istio.io/inject': 'false' } }), 'enabled', false, 'annotation-false'],
    ['lets our annotation win over Istio\'s', pod({ annotations: { 'sidecar.istio.io/inject': 'false', 'sidecar.trellis.dev/inject': 'true' } }), 'disabled', true, 'annotation-true'],
    ['never injects a hostNetwork pod, even when asked', pod({ labels: { 'sidecar.trellis.dev/inject': 'true' }, spec: { hostNetwork: true } }), 'enabled', false, 'host-network'],
    ['never injects a pod twice', pod({ annotations: { [STATUS_ANNOTATION]: '{}' } }), 'enabled', false, 'already-injected'],
    ['treats a pod that already has our container as injected', pod({ spec: { containers: [{ name: 'trellis-sidecar', image: 'x' }] } }), 'enabled', false, 'already-injected'],
  ];
  for (const [name, p, ns, inject, reason] of cases) {
    it(`${name} (${reason})`, () => {
      expect(decideInjection(asPodLike(p), { namespaceInjection: ns })).to.deep.equal({ inject, reason });
    });
  }

  it('refuses an inject label that is neither "true" nor "false"', () => {
    expect(() => injectPod(pod({ labels: { 'sidecar.trellis.dev/inject': 'yes' } }), DEFAULT_INJECTOR_CONFIG))
      .to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_ANNOTATION');
  });

  it('returns no patch at all when it does not inject', () => {
    const r = injectPod(pod({ spec: { hostNetwork: true } }), DEFAULT_INJECTOR_CONFIG);
    expect(r).to.deep.equal({ injected: false, reason: 'host-network', patch: [] });
  });
});

describe('injectPod', () => {
  it('escapes "/" in annotation keys as ~1 in patch paths', () => {
    const r = injectPod(pod({ annotations: { keep: 'me' } }), DEFAULT_INJECTOR_CONFIG);
    const paths = r.patch.map((o) => o.path);
    expect(paths).to.include('/metadata/annotations/sidecar.trellis.dev~1status');
    expect(paths.filter((p) => p.startsWith('/metadata/annotations/')).every((p) => !p.slice('/metadata/annotations/'.length).includes('/'))).to.equal(true);
    expect(escapePointerToken('a~b/c')).to.equal('a~0b~1c');
  });

  it('creates annotations, initContainers and volumes when the pod has none', () => {
    const out = injected(pod({ annotations: null }));
    expect(out.metadata.annotations[STATUS_ANNOTATION]).to.be.a('string');
    expect(out.spec.initContainers.map((c: Obj) => c.name)).to.deep.equal(['trellis-init']);
    expect(out.spec.volumes.map((v: Obj) => v.name)).to.deep.equal(['trellis-token', 'trellis-ca', 'trellis-podinfo']);
  });

  it('creates metadata when a pod template has none', () => {
    const out = injected(pod({ metadata: null }));
    expect(JSON.parse(out.metadata.annotations[STATUS_ANNOTATION]).containers).to.deep.equal(['trellis-sidecar']);
  });

  it('appends to existing initContainers and volumes without touching them', () => {
    const p = pod({ spec: { initContainers: [{ name: 'migrate', image: 'm' }], volumes: [{ name: 'data', emptyDir: {} }] } });
    const out = injected(p);
    expect(out.spec.initContainers.map((c: Obj) => c.name)).to.deep.equal(['trellis-init', 'migrate']);
    expect(out.spec.volumes[0]).to.deep.equal({ name: 'data', emptyDir: {} });
    expect(out.spec.containers.slice(1)).to.deep.equal(p.spec.containers);
  });

  it('puts the sidecar first in containers by default and records the app as default container', () => {
    const out = injected(pod());
    expect(out.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar', 'web']);
    expect(out.metadata.annotations['kubectl.kubernetes.io/default-container']).to.equal('web');
  });

  it('makes the sidecar a native sidecar (initContainer, restartPolicy Always, after the redirect step) when configured', () => {
    const out = injected(pod(), buildInjectorConfig({ nativeSidecar: true }));
    expect(out.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['web']);
    expect(out.spec.initContainers.map((c: Obj) => [c.name, c.restartPolicy])).to.deep.equal([['trellis-init', undefined], ['trellis-sidecar', 'Always']]);
    expect(sidecarOf(out).startupProbe.httpGet).to.deep.include({ path: '/ready', port: 15021 });
  });

  it('lets a pod choose native or classic sidecar mode with sidecar.trellis.dev/nativeSidecar', () => {
    const native = injected(pod({ annotations: { 'sidecar.trellis.dev/nativeSidecar': 'true' } }));
    expect(sidecarOf(native).restartPolicy).to.equal('Always');
    expect(native.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['web']);
    const classic = injected(pod({ annotations: { 'sidecar.trellis.dev/nativeSidecar': 'false' } }), buildInjectorConfig({ nativeSidecar: true }));
    expect(classic.spec.containers.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar', 'web']);
    expect(() => injectPod(pod({ annotations: { 'sidecar.trellis.dev/nativeSidecar': 'maybe' } }), DEFAULT_INJECTOR_CONFIG)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_ANNOTATION');
  });

  it('gives the sidecar the trellis sidecar flags for this pod', () => {
    const p = pod({ labels: { tier: 'front' }, annotations: { 'sidecar.trellis.dev/upstreams': 'payments:9001, ledger.finance:9002' } });
    const args: string[] = sidecarOf(injected(p)).args;
    expect(args.slice(0, 1)).to.deep.equal(['sidecar']);
    const pairs = new Map<string, string[]>();
    for (let i = 1; i < args.length; i += 2) pairs.set(args[i]!, [...(pairs.get(args[i]!) ?? []), args[i + 1]!]);
    expect(Object.fromEntries(pairs)).to.deep.equal({
      '--control-plane': ['trellis-control-plane.trellis-system.svc:15012'],
      '--ca-bundle': ['/var/run/secrets/trellis/ca/root-cert.pem'],
      '--token-file': ['/var/run/secrets/trellis/tokens/token'],
      '--namespace': ['$(TRELLIS_POD_NAMESPACE)'],
      '--service': ['web'],
      '--labels': ['app=web,tier=front'],
      '--inbound': ['15100=8080/http', '15101=9090'],
      '--outbound': ['127.0.0.1:9001=payments:9001', '127.0.0.1:9002=ledger.finance:9002'],
      '--admin': ['127.0.0.1:15000'],
    });
  });

  it('redirects exactly the app TCP ports in the init container, which alone has NET_ADMIN', () => {
    const p = pod({ spec: { containers: [{ name: 'a', image: 'a', ports: [{ containerPort: 53, protocol: 'UDP' }, { containerPort: 8080 }] }, { name: 'b', image: 'b', ports: [{ containerPort: 7070 }] }] } });
    const out = injected(p);
    const init = out.spec.initContainers[0];
    expect(init.args).to.deep.equal(['redirect', 'apply', '--inbound', '7070=15100,8080=15101', '--proxy-uid', '1337']);
    expect(init.securityContext.capabilities).to.deep.equal({ add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    const side = sidecarOf(out);
    expect(side.securityContext).to.deep.include({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false });
    expect(side.securityContext.capabilities).to.deep.equal({ drop: ['ALL'] });
    for (const c of out.spec.containers.filter((x: Obj) => x.name !== 'trellis-sidecar')) expect(c.securityContext).to.equal(undefined);
  });

  it('mounts the projected token (audience trellis, one hour) in the sidecar only', () => {
    const out = injected(pod());
    const token = out.spec.volumes.find((v: Obj) => v.name === 'trellis-token');
    expect(token.projected.sources).to.deep.equal([{ serviceAccountToken: { audience: 'trellis', expirationSeconds: 3600, path: 'token' } }]);
    const mounters = [...out.spec.containers, ...out.spec.initContainers].filter((c: Obj) => (c.volumeMounts ?? []).some((m: Obj) => m.name === 'trellis-token'));
    expect(mounters.map((c: Obj) => c.name)).to.deep.equal(['trellis-sidecar']);
  });

  it('rewrites HTTP probes on redirected ports to the health port and keeps the original for the sidecar', () => {
    const p = pod({
      spec: {
        containers: [{
          name: 'web', image: 'w', ports: [{ name: 'http', containerPort: 8080 }],
          livenessProbe: { httpGet: { path: '/live', port: 'http', httpHeaders: [{ name: 'x', value: 'y' }] }, periodSeconds: 7 },
          readinessProbe: { httpGet: { path: '/ready', port: 3333 } },
          startupProbe: { tcpSocket: { port: 8080 } },
        }],
      },
    });
    const out = injected(p);
    const web = out.spec.containers[1];
    expect(web.livenessProbe).to.deep.equal({ httpGet: { path: '/app-health/web/livez', port: 15021, scheme: 'HTTP' }, periodSeconds: 7 });
    expect(web.readinessProbe).to.deep.equal({ httpGet: { path: '/ready', port: 3333 } }, 'port 3333 is not redirected, so kubelet still reaches it');
    expect(web.startupProbe).to.deep.equal({ tcpSocket: { port: 8080 } });
    const env = sidecarOf(out).env.find((e: Obj) => e.name === 'TRELLIS_APP_PROBES');
    expect(JSON.parse(env.value)).to.deep.equal({ '/app-health/web/livez': { port: 8080, path: '/live', scheme: 'HTTP', httpHeaders: [{ name: 'x', value: 'y' }] } });
  });

  it('is idempotent: a second pass over the injected pod adds nothing', () => {
    const out = injected(pod());
    const again = injectPod(out, DEFAULT_INJECTOR_CONFIG);
    expect(again).to.deep.include({ injected: false, reason: 'already-injected', patch: [] });
  });

  it('leaves ports listed in excludeInboundPorts alone', () => {
    const out = injected(pod({ annotations: { 'sidecar.trellis.dev/excludeInboundPorts': '9090' } }));
    expect(out.spec.initContainers[0].args[3]).to.equal('8080=15100');
  });

  it('adds no init container when the pod has no ports to protect', () => {
    const out = injected(pod({ spec: { containers: [{ name: 'job', image: 'j' }] } }));
    expect(out.spec.initContainers).to.equal(undefined);
    expect(JSON.parse(out.metadata.annotations[STATUS_ANNOTATION]).initContainers).to.deep.equal([]);
  });

  it('refuses an app port that the sidecar needs for itself', () => {
    const p = pod({ spec: { containers: [{ name: 'a', image: 'a', ports: [{ containerPort: 15021 }] }] } });
    expect(() => injectPod(p, DEFAULT_INJECTOR_CONFIG)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_MANIFEST');
  });

  it('names the field when the pod is malformed', () => {
    expect(() => injectPod({ spec: { containers: [{ image: 'x' }] } }, DEFAULT_INJECTOR_CONFIG))
      .to.throw(/spec\.containers\[0\]\.name/).with.property('code', 'TRELLIS_INJECTOR_BAD_MANIFEST');
    expect(() => injectPod({ spec: {} }, DEFAULT_INJECTOR_CONFIG)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_MANIFEST');
  });
});

describe('inbound port plan', () => {
  it('declares each port\'s protocol from its name prefix as Istio does: grpc → /grpc, http2 → /h2c, http → /http, anything else TCP', () => {
    const p = pod({
      spec: {
        containers: [
          { name: 'api', image: 'a', ports: [{ name: 'grpc-api', containerPort: 9000 }, { name: 'http2-x', containerPort: 9001 }, { name: 'http-web', containerPort: 8080 }, { name: 'metrics', containerPort: 9102 }] },
        ],
      },
    });
    const args: string[] = sidecarOf(injected(p)).args;
    const inbound = args.filter((_, i) => args[i - 1] === '--inbound');
    expect(inbound).to.deep.equal(['15100=8080/http', '15101=9000/grpc', '15102=9001/h2c', '15103=9102']);
  });

  const protocolCases: Array<[string, { name?: string; appProtocol?: string }, 'http' | 'h2c' | 'grpc' | undefined]> = [
    ['a port named exactly grpc', { name: 'grpc' }, 'grpc'],
    ['a port named grpc-web-ui (Istio: gRPC-Web, carried over HTTP/2)', { name: 'grpc-web-ui' }, 'grpc'],
    ['a port named GRPC-Api (the prefix is not case sensitive)', { name: 'GRPC-Api' }, 'grpc'],
    ['a port named http2', { name: 'http2' }, 'h2c'],
    ['a port named h2c-internal', { name: 'h2c-internal' }, 'h2c'],
    ['a port named http', { name: 'http' }, 'http'],
    ['a port named httpx (a prefix must end at "-")', { name: 'httpx' }, undefined],
    ['a port named grpcish (a prefix must end at "-")', { name: 'grpcish' }, undefined],
    ['a port named tcp-grpc (the first token decides)', { name: 'tcp-grpc' }, undefined],
    ['a port named https (TLS the app terminates: bytes)', { name: 'https' }, undefined],
    ['an unnamed port', {}, undefined],
    ['appProtocol grpc on a port named http-x (appProtocol wins)', { name: 'http-x', appProtocol: 'grpc' }, 'grpc'],
    ['appProtocol kubernetes.io/h2c', { name: 'web', appProtocol: 'kubernetes.io/h2c' }, 'h2c'],
    ['appProtocol http on an unnamed port', { appProtocol: 'http' }, 'http'],
    ['appProtocol kubernetes.io/ws (WebSocket over cleartext)', { appProtocol: 'kubernetes.io/ws' }, 'http'],
  ];
  for (const [what, port, want] of protocolCases) {
    it(`passes ${want ? `/${want}` : 'TCP'} for ${what}`, () => {
      const plan = planInboundPorts([{ name: 'a', ports: [{ containerPort: 8080, ...port }] }], DEFAULT_INJECTOR_CONFIG);
      expect(plan).to.have.length(1);
      expect(plan[0]!.protocol).to.equal(want ?? 'tcp');
    });
  }

  it('skips listener ports that an app already uses', () => {
    const plan = planInboundPorts([{ name: 'a', ports: [{ containerPort: 80 }, { containerPort: 15100 }] }], DEFAULT_INJECTOR_CONFIG);
    expect(plan.map((p) => [p.appPort, p.listenPort])).to.deep.equal([[80, 15101], [15100, 15102]]);
  });
});

describe('upstreams annotation', () => {
  it('parses SERVICE[.NAMESPACE]:PORT entries', () => {
    expect(parseUpstreams('payments:9001,ledger.finance:9002')).to.deep.equal([
      { service: 'payments', port: 9001, localPort: 9001 },
      { service: 'ledger.finance', port: 9002, localPort: 9002 },
    ]);
  });
  for (const bad of ['payments', 'payments:0', 'payments:70000', 'Pay_ments:80', 'a.b.c:80', 'a:80,b:80', ':80']) {
    it(`refuses "${bad}" with TRELLIS_INJECTOR_BAD_ANNOTATION`, () => {
      expect(() => parseUpstreams(bad)).to.throw().with.property('code', 'TRELLIS_INJECTOR_BAD_ANNOTATION');
    });
  }
});

describe('injector config', () => {
  it('reports every problem with its field', () => {
    try {
      buildInjectorConfig({ image: '', proxyUid: -1, nativeSidecar: 'yes', resources: { limits: { memory: 'lots' } }, typo: 1 }, 'injector.yaml');
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.have.property('code', 'TRELLIS_INJECTOR_BAD_CONFIG');
      const problems = (err as { details: { problems: string[] } }).details.problems;
      expect(problems.map((p) => p.split(':')[0])).to.have.members(['typo', 'image', 'proxyUid', 'nativeSidecar', 'resources.limits.memory']);
    }
  });
});
