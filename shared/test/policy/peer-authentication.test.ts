import { expect } from 'chai';
import { buildPolicySet, effectivePeerAuthentication, parsePolicyFile, resolvePeerAuthentication, modeForPort, type EffectiveMtlsMode } from '../../src';
import { policySet } from './policy-fixtures';

const ROOT = 'trellis-system';
const opts = { rootNamespace: ROOT, defaultMode: 'STRICT' as EffectiveMtlsMode };

/** A PeerAuthentication document. */
function pa(name: string, ns: string, body: string, created?: string): string {
  return `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n${created ? `  creationTimestamp: "${created}"\n` : ''}spec:\n${body}---\n`;
}

const web = { namespace: 'foo', labels: { app: 'web', version: 'v1' } };

interface Case {
  name: string;
  yaml: string;
  workload?: { namespace: string; labels: Record<string, string> };
  port?: number;
  defaultMode?: EffectiveMtlsMode;
  mode: EffectiveMtlsMode;
  scope: string;
  policy?: string;
}

const cases: Case[] = [
  { name: 'no policy: the control plane default (STRICT)', yaml: '', mode: 'STRICT', scope: 'default' },
  { name: 'no policy with a PERMISSIVE default (Istio\'s)', yaml: '', defaultMode: 'PERMISSIVE', mode: 'PERMISSIVE', scope: 'default' },
  { name: 'a mesh-wide policy in the root namespace', yaml: pa('m', ROOT, '  mtls: {mode: PERMISSIVE}\n'), mode: 'PERMISSIVE', scope: 'mesh', policy: `${ROOT}/m` },
  { name: 'a mesh-wide UNSET keeps the default', yaml: pa('m', ROOT, '  mtls: {mode: UNSET}\n'), mode: 'STRICT', scope: 'default' },
  { name: 'a namespace policy overrides the mesh', yaml: pa('m', ROOT, '  mtls: {mode: PERMISSIVE}\n') + pa('n', 'foo', '  mtls: {mode: DISABLE}\n'), mode: 'DISABLE', scope: 'namespace', policy: 'foo/n' },
  { name: 'another namespace\'s policy does not apply', yaml: pa('m', ROOT, '  mtls: {mode: PERMISSIVE}\n') + pa('n', 'bar', '  mtls: {mode: DISABLE}\n'), mode: 'PERMISSIVE', scope: 'mesh', policy: `${ROOT}/m` },
  { name: 'a namespace UNSET inherits the mesh mode', yaml: pa('m', ROOT, '  mtls: {mode: DISABLE}\n') + pa('n', 'foo', '  mtls: {mode: UNSET}\n'), mode: 'DISABLE', scope: 'mesh', policy: `${ROOT}/m` },
  { name: 'a namespace policy with no mtls inherits', yaml: pa('m', ROOT, '  mtls: {mode: DISABLE}\n') + pa('n', 'foo', '  {}\n'), mode: 'DISABLE', scope: 'mesh', policy: `${ROOT}/m` },
  { name: 'an empty selector is namespace-wide', yaml: pa('n', 'foo', '  selector: {}\n  mtls: {mode: PERMISSIVE}\n'), mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/n' },
  { name: 'a workload policy overrides the namespace', yaml: pa('n', 'foo', '  mtls: {mode: PERMISSIVE}\n') + pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n'), mode: 'STRICT', scope: 'workload', policy: 'foo/w' },
  { name: 'a workload policy whose labels do not all match does not apply', yaml: pa('n', 'foo', '  mtls: {mode: PERMISSIVE}\n') + pa('w', 'foo', '  selector: {matchLabels: {app: web, version: v2}}\n  mtls: {mode: STRICT}\n'), mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/n' },
  { name: 'a workload UNSET inherits the namespace', yaml: pa('n', 'foo', '  mtls: {mode: DISABLE}\n') + pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: UNSET}\n'), mode: 'DISABLE', scope: 'namespace', policy: 'foo/n' },
  { name: 'a selector policy in the root namespace is ignored', yaml: pa('r', ROOT, '  selector: {matchLabels: {app: web}}\n  mtls: {mode: DISABLE}\n'), mode: 'STRICT', scope: 'default' },
  { name: 'a workload in the root namespace gets only the mesh policy', yaml: pa('m', ROOT, '  mtls: {mode: PERMISSIVE}\n'), workload: { namespace: ROOT, labels: { app: 'web' } }, mode: 'PERMISSIVE', scope: 'mesh', policy: `${ROOT}/m` },
  { name: 'a port-level mode overrides the workload on that port', yaml: pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n'), port: 8080, mode: 'DISABLE', scope: 'port', policy: 'foo/w' },
  { name: 'a port-level mode does not touch other ports', yaml: pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n'), port: 9090, mode: 'PERMISSIVE', scope: 'workload', policy: 'foo/w' },
  { name: 'a port-level UNSET takes the workload\'s effective mode', yaml: pa('n', 'foo', '  mtls: {mode: PERMISSIVE}\n') + pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  portLevelMtls:\n    8080: {mode: UNSET}\n'), port: 8080, mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/n' },
  { name: 'the oldest of two mesh policies wins', yaml: pa('young', ROOT, '  mtls: {mode: DISABLE}\n', '2024-02-01T00:00:00Z') + pa('old', ROOT, '  mtls: {mode: PERMISSIVE}\n', '2023-01-01T00:00:00Z'), mode: 'PERMISSIVE', scope: 'mesh', policy: `${ROOT}/old` },
  { name: 'the oldest of two namespace policies wins', yaml: pa('a', 'foo', '  mtls: {mode: DISABLE}\n', '2024-02-01T00:00:00Z') + pa('b', 'foo', '  mtls: {mode: PERMISSIVE}\n', '2023-01-01T00:00:00Z'), mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/b' },
  { name: 'the oldest of two matching workload policies wins', yaml: pa('a', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: DISABLE}\n', '2024-02-01T00:00:00Z') + pa('b', 'foo', '  selector: {matchLabels: {version: v1}}\n  mtls: {mode: PERMISSIVE}\n', '2023-01-01T00:00:00Z'), mode: 'PERMISSIVE', scope: 'workload', policy: 'foo/b' },
  { name: 'equal timestamps fall back to name order', yaml: pa('b', 'foo', '  mtls: {mode: DISABLE}\n', '2024-01-01T00:00:00Z') + pa('a', 'foo', '  mtls: {mode: PERMISSIVE}\n', '2024-01-01T00:00:00Z'), mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/a' },
  { name: 'a policy without a timestamp competes with the time its file was first seen', yaml: pa('b', 'foo', '  mtls: {mode: DISABLE}\n', '2025-01-01T00:00:00Z') + pa('a', 'foo', '  mtls: {mode: PERMISSIVE}\n'), mode: 'PERMISSIVE', scope: 'namespace', policy: 'foo/a' },
];

describe('effectivePeerAuthentication', () => {
  for (const c of cases) {
    it(`resolves ${c.name}`, () => {
      const set = policySet(c.yaml);
      const r = effectivePeerAuthentication(set, c.workload ?? web, c.port, { ...opts, ...(c.defaultMode ? { defaultMode: c.defaultMode } : {}) });
      expect(r.mode).to.equal(c.mode);
      expect(r.decidedBy.scope).to.equal(c.scope);
      expect(r.decidedBy.policy ? `${r.decidedBy.policy.namespace}/${r.decidedBy.policy.name}` : undefined).to.equal(c.policy);
    });
  }

  it('orders by the first-seen time across files when manifests carry no timestamp', () => {
    const doc = (name: string, mode: string) => pa(name, 'foo', `  mtls: {mode: ${mode}}\n`);
    const older = parsePolicyFile(doc('zzz', 'DISABLE'), 'a.yaml', { firstSeen: new Date('2020-01-01T00:00:00Z') }).policies;
    const newer = parsePolicyFile(doc('aaa', 'PERMISSIVE'), 'b.yaml', { firstSeen: new Date('2021-01-01T00:00:00Z') }).policies;
    const r = effectivePeerAuthentication(buildPolicySet([...newer, ...older]), web, undefined, opts);
    expect(r).to.deep.equal({ mode: 'DISABLE', decidedBy: { scope: 'namespace', policy: { namespace: 'foo', name: 'zzz' } } });
  });
});

describe('resolvePeerAuthentication', () => {
  it('gives the workload mode and every port override, UNSET ports resolved', () => {
    const set = policySet(pa('n', 'foo', '  mtls: {mode: PERMISSIVE}\n') + pa('w', 'foo', '  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    9090: {mode: UNSET}\n'));
    const r = resolvePeerAuthentication(set, web, opts);
    expect(r.mode).to.equal('STRICT');
    expect(r.portModes).to.deep.equal({ 8080: 'DISABLE', 9090: 'STRICT' });
    expect(modeForPort(r, 8080)).to.equal('DISABLE');
    expect(modeForPort(r, 80)).to.equal('STRICT');
    expect(JSON.parse(JSON.stringify(r))).to.deep.equal({ mode: 'STRICT', decidedBy: { scope: 'workload', policy: { namespace: 'foo', name: 'w' } }, portModes: { '8080': 'DISABLE', '9090': 'STRICT' } });
  });

  it('has no port overrides without a workload policy', () => {
    expect(resolvePeerAuthentication(policySet(''), web, opts)).to.deep.equal({ mode: 'STRICT', decidedBy: { scope: 'default' }, portModes: {} });
  });
});
