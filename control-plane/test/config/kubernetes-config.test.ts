import { expect } from 'chai';
import { resolveConfig } from '../../src/config/control-plane-config';
import { ControlPlaneError } from '../../src/errors/control-plane-error';

const base = { caDir: '/ca', policyDir: '/p' };
const problems = (k: Record<string, unknown>): string[] => {
  try {
    resolveConfig({}, { ...base, kubernetes: k });
    return [];
  } catch (err) {
    return ((err as ControlPlaneError).details.problems as string[]) ?? [];
  }
};

describe('control plane config: Kubernetes token keys', () => {
  it('Should take the issuer and keys from the API server with jwksFromApiServer, the issuer optional', () => {
    const cfg = resolveConfig({}, { ...base, kubernetes: { jwksFromApiServer: true, jwksMinRefresh: '5s' }, kubeconfig: '/k' });
    expect(cfg.kubernetes).to.deep.equal({ issuer: null, audience: 'trellis', jwksFile: null, jwksFromApiServer: true, jwksMinRefreshMs: 5000, registry: false });
    expect(cfg.kubeconfig).to.equal('/k');
  });

  it('Should keep the offline JWKS file mode, which needs the issuer', () => {
    expect(resolveConfig({}, { ...base, kubernetes: { issuer: 'https://i', jwksFile: '/j.json' } }).kubernetes).to.deep.include({ issuer: 'https://i', jwksFile: '/j.json', jwksFromApiServer: false });
    expect(problems({ jwksFile: '/j.json' })).to.deep.equal(['config: /kubernetes/issuer: required with jwksFile (--k8s-issuer URL)']);
  });

  it('Should refuse both key sources at once, and neither', () => {
    expect(problems({ jwksFile: '/j.json', jwksFromApiServer: true, issuer: 'https://i' })[0]).to.match(/either jwksFile .* or jwksFromApiServer/);
    expect(problems({ issuer: 'https://i' })[0]).to.match(/the issuer's keys are needed/);
  });

  it('Should take the registry from the API server only beside a key source for the tokens it attests', () => {
    expect(resolveConfig({}, { ...base, kubernetes: { jwksFromApiServer: true, registry: true } }).kubernetes?.registry).to.equal(true);
    expect(resolveConfig({}, { ...base, kubernetes: { jwksFromApiServer: true } }).kubernetes?.registry).to.equal(false);
    expect(problems({ registry: true })[0]).to.match(/the issuer's keys are needed/);
    expect(problems({ jwksFromApiServer: true, registry: 'yes' })[0]).to.match(/\/kubernetes\/registry: must be boolean/);
  });
});

describe('control plane config: policies and trust bundle on the API server', () => {
  it('Should leave both to detection by default (on when there is an API server), let a flag turn them off and the file require them', () => {
    expect(resolveConfig({}, base)).to.deep.include({ policyCrds: null, rootCertConfigMaps: null });
    expect(resolveConfig({ policyCrds: true, rootCertConfigMaps: true }, { ...base, rootCertConfigMaps: false })).to.deep.include({ policyCrds: true, rootCertConfigMaps: false });
    expect(() => resolveConfig({}, { ...base, policyCrds: 'yes' as never })).to.throw(/\/policyCrds: must be boolean/);
  });
});
