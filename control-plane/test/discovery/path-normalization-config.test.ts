import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AUTHORIZATION_POLICIES_TYPE_URL, buildPolicySet, decodeResource, parsePolicyFile } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';
import { readConfigFile, resolveConfig } from '../../src/config/control-plane-config';
import { policyViewFromSet } from '../../src/discovery/policy-view';
import { ResourceBuilder, type DiscoverySnapshot } from '../../src/discovery/resource-builder';
import { fixedEndpointsView } from '../../src/registry/registry-source';

const DIRS = { caDir: '/ca', policyDir: '/pol' };

describe('The mesh-wide path normalization on the control plane', () => {
  it('Should default to BASE, as Istio, and let the flag win over the file', () => {
    expect(resolveConfig({}, DIRS).pathNormalization).to.equal('BASE');
    const { dir, cleanup } = makeTmpDir();
    try {
      const file = join(dir, 'cp.yaml');
      writeFileSync(file, 'pathNormalization: MERGE_SLASHES\n');
      expect(resolveConfig(readConfigFile(file), DIRS).pathNormalization).to.equal('MERGE_SLASHES');
      expect(resolveConfig(readConfigFile(file), { ...DIRS, pathNormalization: 'DECODE_AND_MERGE_SLASHES' }).pathNormalization).to.equal('DECODE_AND_MERGE_SLASHES');
    } finally {
      cleanup();
    }
  });

  it('Should refuse a value Istio does not name, with its path and the four it accepts', () => {
    let err: unknown;
    try {
      resolveConfig({}, { ...DIRS, pathNormalization: 'merge' as never });
    } catch (e) {
      err = e;
    }
    expect(err).to.have.property('code', 'TRELLIS_CP_CONFIG_INVALID');
    expect((err as { details: { problems: string[] } }).details.problems).to.deep.equal(['config: /pathNormalization: must be one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES']);
  });

  it('Should send it with every workload\'s AuthorizationPolicies, in a body the sidecar decodes, and version it', () => {
    const set = buildPolicySet(parsePolicyFile('', 'none.yaml', { firstSeen: new Date(0) }).policies);
    const w = { namespace: 'shop', labels: { app: 'cart' } };
    const snap = (pathNormalization?: 'MERGE_SLASHES'): DiscoverySnapshot => ({
      bundle: { trustDomain: 'example.org', rootsPem: ['x'] },
      policy: policyViewFromSet(set, { rootNamespace: 'trellis-system', defaultMode: 'STRICT', ...(pathNormalization ? { pathNormalization } : {}) }),
      revocations: { serials: [], spiffeIds: [] },
      endpoints: fixedEndpointsView(new Map()),
    });
    const builder = new ResourceBuilder();
    const base = builder.build(AUTHORIZATION_POLICIES_TYPE_URL, w, [], snap())!;
    const merge = builder.build(AUTHORIZATION_POLICIES_TYPE_URL, w, [], snap('MERGE_SLASHES'))!;
    expect(decodeResource(AUTHORIZATION_POLICIES_TYPE_URL, base.wire[0]!.body)).to.deep.equal({ wireVersion: 1, policies: [], pathNormalization: 'BASE' });
    expect(decodeResource(AUTHORIZATION_POLICIES_TYPE_URL, merge.wire[0]!.body)).to.deep.equal({ wireVersion: 1, policies: [], pathNormalization: 'MERGE_SLASHES' });
    expect(merge.version, 'a change of option is a new version, so it is pushed').to.not.equal(base.version);
  });
});
