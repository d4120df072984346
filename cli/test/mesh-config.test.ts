import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseMeshConfig, MeshConfigError } from '../src/up/mesh-config';
import { inboundArg, tokenArgs } from '../src/up/mesh-runner';

const EXAMPLE = join(__dirname, '..', '..', '..', 'examples', 'mesh.yaml');
const parse = (text: string) => parseMeshConfig(text, 'mesh.yaml', (p) => resolve('/base', p));

function issuesOf(text: string): MeshConfigError['issues'] {
  try {
    parse(text);
  } catch (err) {
    expect(err).to.be.instanceOf(MeshConfigError);
    expect((err as MeshConfigError).code).to.equal('TRELLIS_UP_BAD_CONFIG');
    return (err as MeshConfigError).issues;
  }
  throw new Error('expected the mesh file to be refused');
}

describe('trellis up mesh file', () => {
  it('Should load the bundled example with defaults filled in', () => {
    const cfg = parseMeshConfig(readFileSync(EXAMPLE, 'utf8'), EXAMPLE, (p) => resolve('/base', p));
    expect(cfg.trustDomain).to.equal('trellis.local');
    expect(cfg.policyDir).to.equal('/base/policies');
    expect(cfg.svidTtl).to.equal('1m');
    expect(cfg.workloads.map((w) => w.name)).to.deep.equal(['frontend', 'payments', 'ledger']);
    const payments = cfg.workloads[1]!;
    expect(payments.inbound).to.deep.equal([{ port: 17001, appPort: 18081, protocol: 'http' }]);
    expect(payments.outbound).to.deep.equal([{ port: 19101, service: 'ledger' }]);
    expect(Object.isFrozen(payments.labels)).to.equal(true);
  });

  it('Should report every problem with its line, column and field path', () => {
    const issues = issuesOf([
      'trustDomain: Bad_Domain!',
      'policyDir: ./p',
      'workloads:',
      '  - name: web',
      '    namespace: shop',
      '    admin: 127.0.0.1:15100',
      '    app: { builtin: echo, port: 70000 }',
      '    colour: blue',
    ].join('\n'));
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i]));
    expect(byPath['trustDomain']?.line).to.equal(1);
    expect(byPath['workloads.0.app.port']?.line).to.equal(7);
    expect(byPath['workloads.0.colour']?.message).to.contain('unknown field "colour"');
    expect(byPath['workloads.0.colour']?.line).to.equal(8);
    expect(byPath['workloads.0.colour']?.column).to.equal(5);
  });

  it('Should take each inbound protocol the sidecar does, pass it as the --inbound suffix, and refuse another naming the choices', () => {
    const mesh = (protocols: string[]): string =>
      [
        'trustDomain: td',
        'policyDir: ./p',
        'workloads:',
        '  - name: api',
        '    namespace: ns',
        '    admin: 127.0.0.1:15100',
        '    app: { builtin: echo, port: 18000 }',
        '    inbound:',
        ...protocols.map((p, i) => `      - { port: ${17000 + i}, appPort: ${18000 + i}${p === '' ? '' : `, protocol: ${p}`} }`),
      ].join('\n');
    const w = parse(mesh(['', 'tcp', 'http', 'h2c', 'grpc', 'http1'])).workloads[0]!;
    expect(w.inbound.map((p) => p.protocol)).to.deep.equal(['tcp', 'tcp', 'http', 'h2c', 'grpc', 'http1']);
    expect(w.inbound.map(inboundArg)).to.deep.equal([
      '127.0.0.1:17000=18000',
      '127.0.0.1:17001=18001',
      '127.0.0.1:17002=18002/http',
      '127.0.0.1:17003=18003/h2c',
      '127.0.0.1:17004=18004/grpc',
      '127.0.0.1:17005=18005/http1',
    ]);
    const issues = issuesOf(mesh(['http2']));
    const bad = issues.find((i) => i.path === 'workloads.0.inbound.0.protocol');
    expect(bad, JSON.stringify(issues)).to.not.equal(undefined);
    expect(bad!.line).to.equal(9);
    for (const p of ['tcp', 'http', 'h2c', 'grpc', 'http1']) expect(bad!.message).to.contain(p);
  });

  it('Should refuse two listeners on the same port', () => {
    const issues = issuesOf([
      'trustDomain: td',
      'policyDir: ./p',
      'workloads:',
      '  - { name: a, namespace: ns, admin: "127.0.0.1:15100", app: { builtin: echo, port: 18000 } }',
      '  - { name: b, namespace: ns, admin: "127.0.0.1:15100", app: { builtin: echo, port: 18001 } }',
    ].join('\n'));
    expect(issues).to.have.length(1);
    expect(issues[0]!.path).to.equal('workloads.1.admin');
    expect(issues[0]!.message).to.contain('port 15100 is already used by a admin');
  });

  it('Should refuse an app with both a command and the builtin', () => {
    const issues = issuesOf('trustDomain: td\npolicyDir: p\nworkloads:\n  - { name: a, namespace: ns, admin: "127.0.0.1:1", app: { builtin: echo, command: [x], port: 2 } }\n');
    expect(issues.map((i) => i.message)).to.include('needs exactly one of "builtin" or "command"');
  });

  it('Should take the control plane\'s path normalization by Istio\'s names only', () => {
    const mesh = (v: string): string => `trustDomain: td\npolicyDir: p\ncontrolPlane: { pathNormalization: ${v} }\nworkloads:\n  - { name: a, namespace: ns, admin: "127.0.0.1:1", app: { builtin: echo, port: 2 } }\n`;
    expect(parse(mesh('MERGE_SLASHES')).controlPlane.pathNormalization).to.equal('MERGE_SLASHES');
    expect(parse(mesh('BASE')).controlPlane.pathNormalization).to.equal('BASE');
    const issues = issuesOf(mesh('merge'));
    expect(issues.map((i) => [i.path, i.line])).to.deep.equal([['controlPlane.pathNormalization', 3]]);
    expect(issues[0]!.message).to.contain('DECODE_AND_MERGE_SLASHES');
  });

  it('Should take the control plane\'s key-exchange policy, and name the field of a bad one', () => {
    const mesh = (v: string): string => `trustDomain: td\npolicyDir: p\ncontrolPlane: { keyExchange: ${v} }\nworkloads:\n  - { name: a, namespace: ns, admin: "127.0.0.1:1", app: { builtin: echo, port: 2 } }\n`;
    expect(parse(mesh('require')).controlPlane.keyExchange).to.equal('require');
    const issues = issuesOf(mesh('always'));
    expect(issues.map((i) => [i.path, i.line])).to.deep.equal([['controlPlane.keyExchange', 3]]);
    expect(issues[0]!.message).to.contain('prefer');
  });

  it('Should report a YAML syntax error with its position', () => {
    const issues = issuesOf('trustDomain: td\nworkloads: [\n');
    expect(issues[0]!.line).to.be.greaterThan(1);
  });

  it('Should refuse labels a join token could not attest, with their line', () => {
    const issues = issuesOf(['trustDomain: t.local', 'policyDir: ./p', 'workloads:', '  - name: web', '    namespace: shop', '    admin: 127.0.0.1:15100', '    labels: { tier: "front end" }', '    app: { builtin: echo, port: 18080 }', ''].join('\n'));
    expect(issues.map((i) => [i.line, i.path])).to.deep.equal([[7, 'workloads.0.labels']]);
    expect(issues[0]!.message).to.match(/labels\.tier: value "front end"/);
  });

  it('Should mint each workload\'s token with its service, labels and inbound listener ports', () => {
    const cfg = parseMeshConfig(readFileSync(EXAMPLE, 'utf8'), EXAMPLE, (p) => resolve('/base', p));
    expect(tokenArgs('/ca', cfg.trustDomain, cfg.workloads[1]!)).to.deep.equal([
      '--ca-dir', '/ca', '--spiffe-id', 'spiffe://trellis.local/ns/shop/sa/payments', '--ttl', '15m', '--uses', '1',
      '--service', 'payments', '--labels', 'app=payments,tier=backend', '--ports', '17001',
    ]);
  });
});
