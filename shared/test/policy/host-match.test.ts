import { expect } from 'chai';
import { authorize, canonicalHost, hostMatches, policiesFromJSON, sameHost } from '../../src';

describe('Host matching (AuthorizationPolicy hosts)', () => {
  const canonical: Array<[string, string, string | undefined]> = [
    ['example.com', 'example.com', undefined],
    ['Example.COM', 'example.com', undefined],
    ['example.com.', 'example.com', undefined],
    ['EXAMPLE.com.:8080', 'example.com', '8080'],
    ['example.com:', 'example.com', undefined],
    ['127.0.0.1:15006', '127.0.0.1', '15006'],
    ['[::1]:8080', '[::1]', '8080'],
    ['[::1]', '[::1]', undefined],
    ['example.com:*', 'example.com', '*'],
    ['', '', undefined],
  ];
  for (const [value, name, port] of canonical) {
    it(`Should read ${JSON.stringify(value)} as host ${JSON.stringify(name)}${port ? ` port ${port}` : ''}`, () => {
      expect(canonicalHost(value)).to.deep.equal(port === undefined ? { name } : { name, port });
    });
  }

  const matches: Array<[string, string, boolean]> = [
    ['example.com', 'example.com', true],
    ['example.com', 'EXAMPLE.Com', true],
    ['example.com', 'example.com.', true],
    ['example.com', 'example.com:8080', true],
    ['example.com', 'Example.Com.:443', true],
    ['example.com.', 'example.com', true],
    ['Example.com', 'example.com', true],
    ['example.com', 'example.org', false],
    ['example.com', 'xexample.com', false],
    ['example.com', 'example.com.evil', false],
    ['*.example.com', 'a.EXAMPLE.com.:8080', true],
    ['*.example.com', 'example.com', false],
    ['prefix.example.*', 'prefix.example.org:80', true],
    ['prefix.example.*', 'other.example.org', false],
    ['*', 'anything:1', true],
    ['*', '', true],
    ['example.com', '', false],
    // Istio's documented `host:*` idiom keeps working; a named port must be the request's.
    ['example.com:*', 'example.com:8080', true],
    ['example.com:*', 'example.com', true],
    ['example.com:8080', 'EXAMPLE.com.:8080', true],
    ['example.com:8080', 'example.com:9090', false],
    ['example.com:8080', 'example.com', false],
    ['*:8080', 'any.host:8080', true],
    ['[::1]', '[::1]:8080', true],
  ];
  for (const [pattern, host, want] of matches) {
    it(`Should ${want ? '' : 'not '}match Host ${JSON.stringify(host)} against hosts value ${JSON.stringify(pattern)}`, () => {
      expect(hostMatches(pattern, host)).to.equal(want);
    });
  }

  it('Should call two host values the same host when only case, trailing dot or port differ', () => {
    expect(sameHost('Admin.Internal.:80', 'admin.internal')).to.equal(true);
    expect(sameHost('admin.internal', 'admin.internal.evil')).to.equal(false);
  });

  it('Should deny a request whose Host differs from a DENY hosts value only by case, trailing dot or port', () => {
    const policies = policiesFromJSON([
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'no-admin-host', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
        spec: { action: 'DENY', rules: [{ to: [{ operation: { hosts: ['admin.internal'] } }] }] },
      },
    ]);
    const workload = { namespace: 'shop', labels: {} };
    for (const host of ['admin.internal', 'ADMIN.internal', 'admin.internal.', 'admin.internal:8080', 'Admin.Internal.:80']) {
      expect(authorize(policies, workload, { port: 80, http: { method: 'GET', path: '/', host } }).decision, host).to.equal('DENY');
    }
    expect(authorize(policies, workload, { port: 80, http: { method: 'GET', path: '/', host: 'public.internal' } }).decision).to.equal('ALLOW');
  });
});
