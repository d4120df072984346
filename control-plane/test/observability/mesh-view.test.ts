/**
 * `GET /debug/mesh`, pure: each connected sidecar with its certificate, sync
 * state and what it reports; the policy problems as `trellis validate`
 * prints them.
 */
import { expect } from 'chai';
import type { TypeSyncSnapshot } from '@trellis/shared';
import { meshView, policyProblems } from '../../src/admin/mesh-view';
import type { ProxyStatus } from '../../src/discovery/stream-session';

const ID = 'spiffe://trellis.local/ns/shop/sa/payments';
const synced: TypeSyncSnapshot = { state: 'SYNCED', sentVersion: 'v1', sentNonce: '1', ackedVersion: 'v1', rejectedVersion: null, lastError: null, sentAt: null };
const nacked: TypeSyncSnapshot = { state: 'NACKED', sentVersion: 'v2', sentNonce: '2', ackedVersion: 'v1', rejectedVersion: 'v2', lastError: 'bad policy', sentAt: null };
const status: ProxyStatus = { id: 7, spiffeId: ID, authMethod: 'svid', namespace: 'shop', service: 'payments', labels: { app: 'payments' }, address: '127.0.0.1', pod: null, connectedAt: '2030-01-01T00:00:00.000Z', certificateExpiry: '2030-01-01T00:01:00.000Z', certificateSerial: '0A1B', types: { TrustBundle: synced, AuthorizationPolicies: nacked } };

describe('mesh view (GET /debug/mesh)', () => {
  it('Should show each sidecar with the certificate the control plane knows, the lifetime and renewal it reports for that certificate, and its sync per type', () => {
    const v = meshView({
      now: new Date('2030-01-01T00:00:10Z'),
      trustDomain: 'trellis.local',
      proxies: [{ status, report: { receivedAt: new Date('2030-01-01T00:00:09Z'), report: { windowSeconds: 300, calls: [], workload: { ready: true, readyReason: 'ready', dataPath: 'native', renewAt: '2030-01-01T00:00:31.000Z', rotations: [{ serial: 'a1b', notBefore: '2030-01-01T00:00:00.000Z', notAfter: '2030-01-01T00:01:00.000Z', installedAt: '2030-01-01T00:00:01.000Z' }] } } } }],
      policies: {},
      ca: { error: 'no CA' },
      revocations: { serials: [], spiffeIds: [] },
      latestEvent: 4,
    });
    const w = v.workloads[0]!;
    expect(w.certificate).to.deep.equal({ serial: 'a1b', notBefore: '2030-01-01T00:00:00.000Z', notAfter: '2030-01-01T00:01:00.000Z', renewAt: '2030-01-01T00:00:31.000Z' });
    expect(w).to.deep.include({ ready: true, dataPath: 'native', labels: { app: 'payments' } });
    expect(w.sync['AuthorizationPolicies']).to.deep.equal({ state: 'NACKED', ackedVersion: 'v1', sentVersion: 'v2', rejectedVersion: 'v2', error: 'bad policy' });
    expect(v.graph.nodes).to.deep.equal([ID]);
    expect(v.latestEvent).to.equal(4);
  });

  it('Should not take a reported lifetime for a certificate other than the one the control plane knows it holds', () => {
    const v = meshView({ now: new Date(), trustDomain: 't', proxies: [{ status, report: { receivedAt: new Date(), report: { windowSeconds: 300, calls: [], workload: { ready: true, readyReason: '', dataPath: 'node', renewAt: '2030-01-01T00:00:31.000Z', rotations: [{ serial: 'ffff', notBefore: '2029-01-01T00:00:00.000Z', notAfter: '2031-01-01T00:00:00.000Z', installedAt: '2029-01-01T00:00:00.000Z' }] } } } }], policies: {}, ca: { error: '' }, revocations: { serials: [], spiffeIds: [] }, latestEvent: 0 });
    expect(v.workloads[0]!.certificate).to.deep.equal({ serial: 'a1b', notBefore: null, notAfter: '2030-01-01T00:01:00.000Z', renewAt: null });
  });

  it('Should list the errors of every rejected policy file as trellis validate prints them, and nothing for a file in force', () => {
    const p = policyProblems({
      servable: true,
      version: 'abc',
      dirError: null,
      duplicates: [],
      files: [
        { file: '/p/ok.yaml', state: 'ok', errors: [], warnings: ['/p/ok.yaml:3:1: warning: x [W]'] },
        { file: '/p/broken.yaml', state: 'rejected', lastGoodAt: null, errors: ['/p/broken.yaml:5:11: document 0: spec.action: must be one of ALLOW, DENY [TRELLIS_POLICY_SCHEMA]'] },
      ],
    });
    expect(p).to.deep.equal({ servable: true, version: 'abc', problems: [{ source: '/p/broken.yaml', message: '/p/broken.yaml:5:11: document 0: spec.action: must be one of ALLOW, DENY [TRELLIS_POLICY_SCHEMA]', lastGoodKept: false }] });
    expect(policyProblems({ source: 'static' }).problems).to.deep.equal([]);
  });

  it('Should list rejected API-server objects too, and the problems of every source of a merged status', () => {
    const objects = { servable: true, version: 'o', duplicates: [], objects: [{ object: 'AuthorizationPolicy shop/deny', state: 'rejected', inForceGeneration: 1, errors: ['AuthorizationPolicy shop/deny: spec.action: bad [TRELLIS_POLICY_SCHEMA]'] }, { object: 'AuthorizationPolicy shop/ok', state: 'valid', inForceGeneration: 2, errors: [] }] };
    const files = { servable: true, version: 'f', dirError: null, duplicates: [], files: [{ file: 'x.yaml', state: 'rejected', lastGoodAt: '2030-01-01T00:00:00.000Z', errors: ['x.yaml:1:1: y [Z]'] }] };
    expect(policyProblems({ servable: true, duplicates: ['AuthorizationPolicy shop/a in files and crds'], sources: { files, crds: objects } }).problems).to.deep.equal([
      { source: '(duplicates)', message: 'AuthorizationPolicy shop/a in files and crds', lastGoodKept: true },
      { source: 'x.yaml', message: 'x.yaml:1:1: y [Z]', lastGoodKept: true },
      { source: 'AuthorizationPolicy shop/deny', message: 'AuthorizationPolicy shop/deny: spec.action: bad [TRELLIS_POLICY_SCHEMA]', lastGoodKept: true },
    ]);
  });
});
