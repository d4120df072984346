import { expect } from 'chai';
import { parseInboundSpec, parseOutboundSpec, parseSidecarConfig, type SidecarConfig } from './helpers/harness';

const BASE = { 'control-plane': ['cp-0:15012', 'cp-1:15012'], 'ca-bundle': '/etc/trellis/ca.pem', 'token-file': '/var/run/token', namespace: 'shop', service: 'cart' };

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect((err as { code?: string }).code).to.equal('TRELLIS_SIDECAR_BAD_CONFIG');
    return (err as { details: { problems: string[] } }).details.problems;
  }
  throw new Error('expected a TRELLIS_SIDECAR_BAD_CONFIG error');
}

describe('Sidecar configuration', () => {
  it('Should parse the issue-style flags into a frozen config with our Kubernetes SPIFFE ID', () => {
    const c: SidecarConfig = parseSidecarConfig({
      flags: { ...BASE, labels: ['app=cart,version=v2'], inbound: ['15006=8080/http', '127.0.0.1:15007=9090'], outbound: ['15101=payments:9001', '15102=10.0.0.9:8443#spiffe://cluster.local/ns/pay/sa/api'], admin: '127.0.0.1:15000' },
      env: { TRELLIS_SERVICE_ACCOUNT: 'cart-sa' },
    });
    expect(Object.isFrozen(c)).to.equal(true);
    expect(c.spiffeId).to.equal('spiffe://cluster.local/ns/shop/sa/cart-sa');
    expect(c.controlPlane).to.deep.equal(['cp-0:15012', 'cp-1:15012']);
    expect(c.labels).to.deep.equal({ app: 'cart', version: 'v2' });
    expect(c.inbound).to.deep.equal([
      { host: '0.0.0.0', port: 15006, appPort: 8080, http: true },
      { host: '127.0.0.1', port: 15007, appPort: 9090, http: false },
    ]);
    expect(c.outbound).to.deep.equal([
      { host: '127.0.0.1', port: 15101, target: { kind: 'service', service: 'payments', port: 9001 } },
      { host: '127.0.0.1', port: 15102, target: { kind: 'explicit', address: '10.0.0.9:8443', spiffeId: 'spiffe://cluster.local/ns/pay/sa/api' } },
    ]);
    expect(c.admin).to.deep.equal({ host: '127.0.0.1', port: 15000 });
    expect(c.drainMs).to.equal(5000);
    expect(c.rotation).to.deep.equal({ fraction: 0.5, jitter: 0.1 });
  });

  it('Should refuse a non-loopback --admin unless --admin-allow-remote is given, naming the source', () => {
    for (const admin of ['0.0.0.0:15000', '10.1.2.3:15000', '[::]:15000', 'pod.example:15000']) {
      const p = problems(() => parseSidecarConfig({ flags: { ...BASE, admin }, env: {} }));
      expect(p.join('\n'), admin).to.match(/--admin: .*not a loopback address.*--admin-allow-remote/);
    }
    const env = problems(() => parseSidecarConfig({ flags: BASE, env: { TRELLIS_ADMIN: '0.0.0.0:15000' } }));
    expect(env.join('\n')).to.contain('$TRELLIS_ADMIN');
    for (const admin of ['127.0.0.1:15000', '15000', 'localhost:15000', '[::1]:15000', '127.0.0.2:15000']) {
      expect(parseSidecarConfig({ flags: { ...BASE, admin }, env: {} }).admin, admin).to.not.equal(undefined);
    }
    const allowed = parseSidecarConfig({ flags: { ...BASE, admin: '0.0.0.0:15000', 'admin-allow-remote': true }, env: {} });
    expect(allowed.admin).to.deep.equal({ host: '0.0.0.0', port: 15000 });
    expect(parseSidecarConfig({ flags: { ...BASE, admin: '0.0.0.0:15000' }, env: { TRELLIS_ADMIN_ALLOW_REMOTE: 'true' } }).admin).to.deep.equal({ host: '0.0.0.0', port: 15000 });
  });

  it('Should let flags win over environment variables, and environment variables over the file', () => {
    const file = { path: 'sidecar.yaml', text: 'controlPlane: [file:1]\ncaBundle: /file/ca.pem\ntokenFile: /file/token\nnamespace: filens\nservice: filesvc\ndrain: 30s\nlabels: {app: web}\ninbound: ["15006=8080"]\n' };
    const c = parseSidecarConfig({ flags: { service: 'flagsvc' }, env: { TRELLIS_NAMESPACE: 'envns', TRELLIS_SERVICE: 'envsvc' }, file });
    expect(c.service).to.equal('flagsvc');
    expect(c.namespace).to.equal('envns');
    expect(c.caBundleFile).to.equal('/file/ca.pem');
    expect(c.drainMs).to.equal(30_000);
    expect(c.labels).to.deep.equal({ app: 'web' });
    expect(c.inbound).to.have.length(1);
  });

  it('Should default the data path to auto and refuse a value other than auto, native or node, naming its source', () => {
    expect(parseSidecarConfig({ flags: BASE, env: {} }).dataPath).to.equal('auto');
    expect(parseSidecarConfig({ flags: BASE, env: { TRELLIS_DATA_PATH: 'node' } }).dataPath).to.equal('node');
    expect(parseSidecarConfig({ flags: { ...BASE, 'data-path': 'native' }, env: { TRELLIS_DATA_PATH: 'node' } }).dataPath).to.equal('native');
    const found = problems(() => parseSidecarConfig({ flags: BASE, env: { TRELLIS_DATA_PATH: 'kernel' } }));
    expect(found).to.have.length(1);
    expect(found[0]).to.contain('TRELLIS_DATA_PATH').and.contain('"kernel"').and.contain('auto, native or node');
  });

  describe('identity from a join token', () => {
    // A join token as `trellis token create` writes it: tj1. + a JWT whose sub is the SPIFFE ID (unsigned here: the sidecar never verifies its own token).
    const jwtPart = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const joinToken = (sub: unknown): string => `tj1.${jwtPart({ alg: 'HS256', typ: 'JWT' })}.${jwtPart({ sub, iss: 'trellis-join-token', uses: 1 })}.c2ln`;
    const noIdentity = { 'control-plane': ['cp:15012'], 'ca-bundle': '/ca.pem', 'token-file': '/token', service: 'frontend' };
    const reading = (token: string | undefined) => (path: string): string | undefined => (path === '/token' ? token : undefined);

    it('Should take the SPIFFE ID, trust domain, namespace and service account from a join token when no flag names them', () => {
      const c = parseSidecarConfig({ flags: noIdentity, env: {}, readToken: reading(joinToken('spiffe://trellis.local/ns/shop/sa/frontend')) });
      expect(c.spiffeId).to.equal('spiffe://trellis.local/ns/shop/sa/frontend');
      expect(c.spiffeIdSource).to.equal('join-token');
      expect(c.trustDomain).to.equal('trellis.local');
      expect(c.controlPlaneSpiffeId).to.equal('spiffe://trellis.local/ns/trellis-system/sa/trellis-control-plane');
      expect([c.namespace, c.serviceAccount]).to.deep.equal(['shop', 'frontend']);
    });

    it('Should keep --spiffe-id over the token, and --trust-domain over the token\'s trust domain', () => {
      const token = reading(joinToken('spiffe://trellis.local/ns/shop/sa/frontend'));
      const byFlag = parseSidecarConfig({ flags: { ...noIdentity, 'spiffe-id': 'spiffe://trellis.local/ns/shop/sa/other' }, env: {}, readToken: token });
      expect([byFlag.spiffeId, byFlag.spiffeIdSource]).to.deep.equal(['spiffe://trellis.local/ns/shop/sa/other', 'flag']);
      const td = parseSidecarConfig({ flags: { ...noIdentity, 'trust-domain': 'cluster.local' }, env: {}, readToken: token });
      expect([td.spiffeId, td.trustDomain]).to.deep.equal(['spiffe://trellis.local/ns/shop/sa/frontend', 'cluster.local']);
    });

    it('Should take the trust domain from --spiffe-id when --trust-domain is not given', () => {
      const c = parseSidecarConfig({ flags: { ...noIdentity, 'spiffe-id': 'spiffe://example.org/ns/web/sa/api' }, env: {} });
      expect([c.trustDomain, c.namespace, c.serviceAccount]).to.deep.equal(['example.org', 'web', 'api']);
    });

    const notJoin: Array<[string, string | undefined]> = [
      ['a Kubernetes ServiceAccount token', `${jwtPart({ alg: 'RS256' })}.${jwtPart({ sub: 'system:serviceaccount:shop:frontend' })}.sig`],
      ['a join token whose sub is not a SPIFFE ID', joinToken('frontend')],
      ['a join token whose payload is not JSON', 'tj1.e30.bm90IGpzb24.c2ln'],
      ['an unreadable token file', undefined],
    ];
    for (const [what, token] of notJoin) {
      it(`Should fall back to the Kubernetes form for ${what}`, () => {
        const c = parseSidecarConfig({ flags: { ...noIdentity, namespace: 'shop' }, env: {}, readToken: reading(token) });
        expect([c.spiffeId, c.spiffeIdSource]).to.deep.equal(['spiffe://cluster.local/ns/shop/sa/default', 'kubernetes']);
      });
    }

    it('Should still require --namespace when nothing names the identity', () => {
      expect(problems(() => parseSidecarConfig({ flags: noIdentity, env: {}, readToken: reading(undefined) }))).to.deep.equal(['--namespace is required (or $TRELLIS_NAMESPACE, or "namespace" in the config file)']);
    });
  });

  it('Should default the pending handshake cap to 1024 and refuse one that is not a positive whole number, naming its source', () => {
    expect(parseSidecarConfig({ flags: BASE, env: {} }).maxPendingHandshakes).to.equal(1024);
    expect(parseSidecarConfig({ flags: { ...BASE, 'max-pending-handshakes': '64' }, env: { TRELLIS_MAX_PENDING_HANDSHAKES: '512' } }).maxPendingHandshakes).to.equal(64);
    expect(parseSidecarConfig({ flags: BASE, env: { TRELLIS_MAX_PENDING_HANDSHAKES: '512' } }).maxPendingHandshakes).to.equal(512);
    for (const bad of ['0', '-1', '1.5', 'lots']) {
      const found = problems(() => parseSidecarConfig({ flags: BASE, env: { TRELLIS_MAX_PENDING_HANDSHAKES: bad } }));
      expect(found, bad).to.have.length(1);
      expect(found[0]).to.contain('TRELLIS_MAX_PENDING_HANDSHAKES').and.contain(`"${bad}"`);
    }
  });

  it('Should take the namespace from the downward-API variable injection sets', () => {
    const { namespace, ...rest } = BASE;
    void namespace;
    expect(parseSidecarConfig({ flags: rest, env: { TRELLIS_POD_NAMESPACE: 'from-pod' } }).namespace).to.equal('from-pod');
  });

  it('Should report every problem at once, naming the source of each bad value', () => {
    const found = problems(() =>
      parseSidecarConfig({
        flags: { inbound: ['15006=http'], outbound: ['15101=Not_A_Service'], admin: 'localhost:99999' },
        env: { TRELLIS_DRAIN: 'soon', TRELLIS_ROTATE_AT: '1.5' },
        file: { path: 'bad.yaml', text: 'colour: blue\n' },
      }),
    );
    const text = found.join('\n');
    for (const needle of ['--control-plane is required', '--ca-bundle is required', '--token-file is required', '--namespace is required', '--service is required', '--inbound: "15006=http"', '--outbound: "15101=Not_A_Service"', '--admin: "localhost:99999"', '$TRELLIS_DRAIN', '$TRELLIS_ROTATE_AT', 'bad.yaml: unknown field "colour"']) {
      expect(text).to.contain(needle);
    }
  });

  const inboundCases: Array<[string, unknown]> = [
    ['15006=8080', { host: '0.0.0.0', port: 15006, appPort: 8080, http: false }],
    ['[::1]:15006=8080/http', { host: '::1', port: 15006, appPort: 8080, http: true }],
    ['15006=50051/grpc', { host: '0.0.0.0', port: 15006, appPort: 50051, http: true, appProtocol: 'grpc' }],
    ['15006=8081/h2c', { host: '0.0.0.0', port: 15006, appPort: 8081, http: true, appProtocol: 'h2c' }],
    ['127.0.0.1:15006=8080/http1', { host: '127.0.0.1', port: 15006, appPort: 8080, http: true, appProtocol: 'http1' }],
    ['15006', 'expected [HOST:]PORT=APP_PORT[/PROTOCOL] (PROTOCOL: http, h2c, grpc or http1)'],
    ['15006=8080/http2', 'unknown application protocol "http2": PROTOCOL must be http, h2c, grpc or http1 (no suffix: TCP)'],
    ['15006=8080/HTTP', 'unknown application protocol "HTTP": PROTOCOL must be http, h2c, grpc or http1 (no suffix: TCP)'],
    ['15006=8080/', 'unknown application protocol "": PROTOCOL must be http, h2c, grpc or http1 (no suffix: TCP)'],
    ['15006=http', 'the application side must be APP_PORT[/PROTOCOL] (PROTOCOL: http, h2c, grpc or http1)'],
    ['15006=0', 'application port 0 is out of range'],
    ['99999=80', 'listen address: port 99999 is out of range'],
  ];
  for (const [spec, want] of inboundCases) {
    it(`Should read --inbound ${spec} as ${typeof want === 'string' ? 'an error' : 'a listener'}`, () => {
      expect(parseInboundSpec(spec)).to.deep.equal(want);
    });
  }

  it('Should name the source and the allowed protocols of a bad inbound suffix', () => {
    const found = problems(() => parseSidecarConfig({ flags: BASE, env: { TRELLIS_INBOUND: '15006=8080/http,15007=9090/grcp' } }));
    expect(found).to.have.length(1);
    expect(found[0]).to.match(/^\$TRELLIS_INBOUND: "15007=9090\/grcp": unknown application protocol "grcp": PROTOCOL must be http, h2c, grpc or http1/);
  });

  const outboundCases: Array<[string, unknown]> = [
    ['15101=payments', { host: '127.0.0.1', port: 15101, target: { kind: 'service', service: 'payments' } }],
    ['0.0.0.0:15101=ledger.finance:9002', { host: '0.0.0.0', port: 15101, target: { kind: 'service', service: 'ledger.finance', port: 9002 } }],
    ['15101=10.0.0.1:443#not-spiffe', '"not-spiffe" is not a SPIFFE ID'],
    ['15101=:443#spiffe://td/ns/a/sa/b', 'explicit target ":443" must be HOST:PORT'],
    ['15101=payments:9001/http', { host: '127.0.0.1', port: 15101, target: { kind: 'service', service: 'payments', port: 9001 }, http: true }],
    ['15101=10.0.0.1:443/http#spiffe://td/ns/a/sa/b', { host: '127.0.0.1', port: 15101, target: { kind: 'explicit', address: '10.0.0.1:443', spiffeId: 'spiffe://td/ns/a/sa/b' }, http: true }],
  ];
  for (const [spec, want] of outboundCases) {
    it(`Should read --outbound ${spec} as ${typeof want === 'string' ? 'an error' : 'a listener'}`, () => {
      expect(parseOutboundSpec(spec)).to.deep.equal(want);
    });
  }
});
