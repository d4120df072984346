import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { readConfigFile, resolveConfig } from '../../src/config/control-plane-config';

describe('control plane admin settings', () => {
  const base = { caDir: '/ca', policyDir: '/pol' };

  it('Should default to the trust domain admin identity, no extra Hosts, and root-key rotation proof', () => {
    const cfg = resolveConfig({}, base);
    expect(cfg.adminAllow).to.equal(null);
    expect(cfg.adminHosts).to.deep.equal([]);
    expect(cfg.rootRotationAuth).to.equal('root-key');
  });

  it('Should read adminAllow, adminHosts and rootRotationAuth from the file, with flags winning', () => {
    const { dir, cleanup } = makeTmpDir();
    try {
      const file = join(dir, 'cp.yaml');
      writeFileSync(file, 'caDir: ./ca\npolicyDir: ./pol\nadminAllow: [spiffe://example.org/ns/ops/sa/alice]\nadminHosts: ["10.0.0.7", "fd00::7", "cp.trellis-system.svc:15014"]\nrootRotationAuth: admin-identity\n');
      const cfg = resolveConfig(readConfigFile(file), { adminAllow: ['spiffe://example.org/ns/ops/sa/bob'] });
      expect(cfg.adminAllow).to.deep.equal(['spiffe://example.org/ns/ops/sa/bob']);
      expect(cfg.adminHosts).to.deep.equal(['10.0.0.7', 'fd00::7', 'cp.trellis-system.svc:15014']);
      expect(cfg.rootRotationAuth).to.equal('admin-identity');
    } finally {
      cleanup();
    }
  });

  it('Should refuse a bad allow-list entry, Host or rotation mode, naming each field', () => {
    let problems: string[] = [];
    try {
      resolveConfig({}, { ...base, adminAllow: ['spiffe://example.org/ok', 'spiffe://bad domain/x'], adminHosts: ['a b', 'http://x'], rootRotationAuth: 'anyone' as never });
    } catch (err) {
      expect((err as { code: string }).code).to.equal('TRELLIS_CP_CONFIG_INVALID');
      problems = (err as { details: { problems: string[] } }).details.problems;
    }
    for (const field of ['/adminAllow/1', '/adminHosts/0', '/adminHosts/1', '/rootRotationAuth']) expect(problems.some((p) => p.includes(field)), `${field} in ${problems.join('; ')}`).to.equal(true);
  });
});
