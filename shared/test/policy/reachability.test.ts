/**
 * Istio's reachability table (corpus `reachability_semantics`), seen from a
 * server that has a sidecar: which PeerAuthentication lets a sidecar-less
 * (plaintext) client in, and that an mTLS client always gets in when no
 * AuthorizationPolicy says otherwise.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { explainInbound, type EffectiveMtlsMode } from '../../src';
import { CORPORA, corpusPath, describeWith } from '@trellis/testkit';
import { policySet } from './policy-fixtures';

const ROOT = 'istio-system';
const server = { namespace: 'ns1', labels: { app: 'b' } };
const PORT = 8090;
const pa = (ns: string, spec: string) => `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: ${ns}}\nspec: ${spec}\n`;

/** How each peer_authentication description of the table is written as a manifest, and whether a plaintext client reaches a sidecar server. */
const rows: Record<string, { yaml: string; plaintextReachesSidecar: boolean; defaultMode?: EffectiveMtlsMode }> = {
  'global mtls strict': { yaml: pa(ROOT, '{mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
  'global mtls permissive': { yaml: pa(ROOT, '{mtls: {mode: PERMISSIVE}}'), plaintextReachesSidecar: true },
  'global mtls disabled': { yaml: pa(ROOT, '{mtls: {mode: DISABLE}}'), plaintextReachesSidecar: true },
  'global plaintext to mtls permissive': { yaml: pa(ROOT, '{mtls: {mode: PERMISSIVE}}'), plaintextReachesSidecar: true },
  'global automtls strict': { yaml: pa(ROOT, '{mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
  'global automtls disable': { yaml: pa(ROOT, '{mtls: {mode: DISABLE}}'), plaintextReachesSidecar: true },
  'global no peer authn': { yaml: '', defaultMode: 'PERMISSIVE', plaintextReachesSidecar: true },
  'mtls strict (workload selector)': { yaml: pa('ns1', '{selector: {matchLabels: {app: b}}, mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
  'mtls permissive (workload selector)': { yaml: pa('ns1', '{selector: {matchLabels: {app: b}}, mtls: {mode: PERMISSIVE}}'), plaintextReachesSidecar: true },
  'mtls disabled (workload selector)': { yaml: pa('ns1', '{selector: {matchLabels: {app: b}}, mtls: {mode: DISABLE}}'), plaintextReachesSidecar: true },
  'mtls port override': { yaml: pa('ns1', `{selector: {matchLabels: {app: b}}, mtls: {mode: STRICT}, portLevelMtls: {"${PORT}": {mode: DISABLE}}}`), plaintextReachesSidecar: true },
  'migration no tls': { yaml: pa('ns1', '{mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
  'migration tls disabled': { yaml: pa('ns1', '{mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
  'migration tls mutual': { yaml: pa('ns1', '{mtls: {mode: STRICT}}'), plaintextReachesSidecar: false },
};

describeWith(CORPORA, 'Istio corpus: reachability semantics', () => {
  const table = (JSON.parse(readFileSync(corpusPath('istio-security-policies', 'manifest.json'), 'utf8')) as { reachability_semantics: { cases: Array<{ case: string; peer_authentication: string }> } }).reachability_semantics.cases;

  it('covers every row of the table', () => {
    expect(Object.keys(rows).sort()).to.deep.equal(table.map((c) => c.case).sort());
  });

  for (const row of table) {
    const r = rows[row.case];
    it(`${row.case} (${row.peer_authentication}): plaintext ${r?.plaintextReachesSidecar ? 'reaches' : 'is refused by'} a sidecar server, mTLS always reaches it`, () => {
      if (!r) throw new Error(`no mapping for ${row.case}`);
      const set = policySet(r.yaml);
      const opts = { rootNamespace: ROOT, defaultMode: r.defaultMode ?? ('STRICT' as const) };
      const plain = explainInbound(set, server, { port: PORT }, opts);
      expect(plain.decision === 'ALLOW', plain.reason).to.equal(r.plaintextReachesSidecar);
      if (!r.plaintextReachesSidecar) expect(plain.code).to.equal('PLAINTEXT_REJECTED');
      const mtls = explainInbound(set, server, { port: PORT, principal: 'spiffe://cluster.local/ns/ns2/sa/a' }, opts);
      expect(mtls.decision, mtls.reason).to.equal('ALLOW');
    });
  }
});
