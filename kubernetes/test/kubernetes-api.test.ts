import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { silentLogger } from '@trellis/shared';
import { requireKubeApiServer, startKubeApiServer, waitFor, type KubeApiServer } from '@trellis/testkit';
import {
  KubeClient,
  KubernetesError,
  LeaderElector,
  decideLease,
  detectApiFeatures,
  fetchDiscoveryFacts,
  startInformer,
  type DiscoveryFacts,
  type KubeObject,
  type ResourceInformer,
} from '../src';

const FIXTURES = join(__dirname, '..', '..', 'test', 'fixtures');
const fixture = (name: string): DiscoveryFacts & { source: string } => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));

describe('API feature detection (pure, from discovery facts)', () => {
  // Recorded facts for current clusters; each fixture says where its facts come from.
  const table: Array<[string, Partial<ReturnType<typeof detectApiFeatures>>]> = [
    ['discovery-1.24.json', { endpointSlice: 'discovery.k8s.io/v1', podDisruptionBudget: 'policy/v1', nativeSidecars: false, crdValidationRules: false, namespaceNameLabel: true }],
    ['discovery-1.29.json', { endpointSlice: 'discovery.k8s.io/v1', podDisruptionBudget: 'policy/v1', nativeSidecars: true, crdValidationRules: true, namespaceNameLabel: true }],
    ['discovery-1.31-eks.json', { endpointSlice: 'discovery.k8s.io/v1', podDisruptionBudget: 'policy/v1', nativeSidecars: true, crdValidationRules: true }],
  ];
  for (const [file, expected] of table) {
    it(`Should read ${file} as ${JSON.stringify(expected)}`, () => {
      const f = fixture(file);
      expect(f.source, 'the fixture says where its facts come from').to.be.a('string').and.not.equal('');
      expect(detectApiFeatures(f)).to.deep.include(expected);
    });
  }

  it('Should prefer the served group version over the server version (a cluster may disable v1)', () => {
    const f = detectApiFeatures({ version: { major: '1', minor: '22', gitVersion: 'v1.22.0' }, groupVersions: ['v1', 'discovery.k8s.io/v1beta1', 'policy/v1beta1'] });
    expect(f.endpointSlice).to.equal('discovery.k8s.io/v1beta1');
    expect(f.podDisruptionBudget).to.equal('policy/v1beta1');
  });

  it('Should fall back to gitVersion when major/minor are empty, and report nothing it does not see', () => {
    const f = detectApiFeatures({ version: { major: '', minor: '', gitVersion: 'v1.30.1+k3s1' }, groupVersions: ['v1'] });
    expect(f.serverVersion).to.deep.include({ major: 1, minor: 30 });
    expect(f).to.deep.include({ nativeSidecars: true, endpointSlice: null, podDisruptionBudget: null, admissionRegistrationV1: false, leases: false });
  });
});

describe('Lease decision (pure)', () => {
  const base = { identity: 'b', nowMs: 100_000, leaseDurationMs: 15_000 };
  it('Should take a missing or released lease at once', () => {
    expect(decideLease({ ...base, record: null, observedAtMs: 100_000 })).to.deep.equal({ action: 'acquire', leaseTransitions: 0 });
    expect(decideLease({ ...base, record: { holderIdentity: '', leaseTransitions: 3 }, observedAtMs: 100_000 })).to.deep.equal({ action: 'acquire', leaseTransitions: 4 });
  });
  it('Should follow another holder until its lease went unrenewed for the whole duration on our own clock', () => {
    const record = { holderIdentity: 'a', leaseDurationSeconds: 15, renewTime: '1970-01-01T00:00:00.000000Z', leaseTransitions: 1 };
    // The record's renewTime is ancient (skewed clock): what counts is when we last saw it change.
    expect(decideLease({ ...base, record, observedAtMs: 90_000 })).to.deep.equal({ action: 'follow', holder: 'a', expiresInMs: 5_000 });
    expect(decideLease({ ...base, record, observedAtMs: 85_000 })).to.deep.equal({ action: 'acquire', leaseTransitions: 2 });
  });
  it('Should renew its own lease', () => {
    expect(decideLease({ ...base, record: { holderIdentity: 'b' }, observedAtMs: 0 })).to.deep.equal({ action: 'renew' });
  });
});

describe('Kubernetes adapters on a real API server', function () {
  this.timeout(120_000);
  let k8s: KubeApiServer;
  let client: KubeClient;

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the Kubernetes adapter tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    client = await KubeClient.connect({ kubeconfig: k8s.kubeconfig });
  });
  after(async () => {
    await k8s?.stop();
  });

  it(`Should detect the running server's features from its discovery (EndpointSlice, PDB, native sidecars)`, async () => {
    const facts = await fetchDiscoveryFacts(client);
    const f = detectApiFeatures(facts);
    const [, minor] = /^v1\.(\d+)/.exec(k8s.version) ?? [];
    expect(f.serverVersion.gitVersion).to.equal(k8s.version);
    expect(f.admissionRegistrationV1).to.equal(true);
    expect(f.leases).to.equal(true);
    if (Number(minor) === 20) {
      // What 1.20 serves (the shared/k8s build): v1beta1 of both, no native sidecars, no CEL.
      expect(f).to.deep.include({ endpointSlice: 'discovery.k8s.io/v1beta1', podDisruptionBudget: 'policy/v1beta1', nativeSidecars: false, crdValidationRules: false, namespaceNameLabel: false });
    } else {
      expect(f.endpointSlice).to.equal('discovery.k8s.io/v1');
    }
  });

  it('Should refuse to connect without a kubeconfig outside a pod, with TRELLIS_K8S_NO_CONFIG', async () => {
    const err = await KubeClient.connect({ env: {} }).then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(KubernetesError);
    expect((err as KubernetesError).code).to.equal('TRELLIS_K8S_NO_CONFIG');
  });

  it('Should map API answers to codes: 404 NOT_FOUND, 409 CONFLICT on a stale resourceVersion', async () => {
    expect(await client.getOrNull('/api/v1/namespaces/default/configmaps/nope')).to.equal(null);
    const cm = await client.create('/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'conflict' }, data: { a: '1' } });
    await client.replace('/api/v1/namespaces/default/configmaps/conflict', { ...cm, data: { a: '2' } });
    const err = await client.replace('/api/v1/namespaces/default/configmaps/conflict', { ...cm, data: { a: '3' } }).then(() => null, (e: unknown) => e);
    expect((err as KubernetesError).code).to.equal('TRELLIS_K8S_CONFLICT');
  });

  it('Should send consecutive requests over one kept-alive connection, not a TCP and TLS handshake each', async () => {
    // A plain TCP forwarder in front of the real API server counts the connections clients open.
    let connections = 0;
    const open = new Set<Socket>();
    const target = new URL(k8s.server);
    const forwarder = createNetServer((down) => {
      connections++;
      open.add(down);
      const up = netConnect(Number(target.port), target.hostname);
      down.pipe(up).pipe(down);
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', () => r()));
    const kubeconfig = join(k8s.runDir, 'forwarded.kubeconfig');
    writeFileSync(kubeconfig, readFileSync(k8s.kubeconfig, 'utf8').replace(k8s.server, `https://127.0.0.1:${(forwarder.address() as AddressInfo).port}`));
    const forwarded = await KubeClient.connect({ kubeconfig });
    try {
      for (let i = 0; i < 10; i++) expect(await forwarded.getOrNull('/api/v1/namespaces/default/configmaps/nope')).to.equal(null);
      await forwarded.create('/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kept-alive' } });
      expect(connections, 'connections for 11 sequential requests').to.equal(1);
    } finally {
      forwarded.close();
      for (const sock of open) sock.destroy();
      await new Promise<void>((r) => forwarder.close(() => r()));
    }
  });

  it('Should send a request again on a new connection when the kept-alive one is reset as it is reused', async () => {
    // Once armed, the forwarder resets the first connection when the client next sends on it (its second
    // request), as a server that closed an idle connection at that moment would: the request never reached it.
    let connections = 0;
    let armed = false;
    const open = new Set<Socket>();
    const target = new URL(k8s.server);
    const forwarder = createNetServer((down) => {
      const n = ++connections;
      open.add(down);
      const up = netConnect(Number(target.port), target.hostname);
      up.on('data', (d: Buffer) => down.write(d));
      down.on('data', (d: Buffer) => {
        if (n === 1 && armed) down.resetAndDestroy();
        else up.write(d);
      });
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
      down.on('close', () => up.destroy());
    });
    await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', () => r()));
    const kubeconfig = join(k8s.runDir, 'resetting.kubeconfig');
    writeFileSync(kubeconfig, readFileSync(k8s.kubeconfig, 'utf8').replace(k8s.server, `https://127.0.0.1:${(forwarder.address() as AddressInfo).port}`));
    const resetting = await KubeClient.connect({ kubeconfig });
    try {
      expect(await resetting.getOrNull('/api/v1/namespaces/default/configmaps/nope')).to.equal(null);
      // The first answer is in: the client sends nothing more on that connection until its next request.
      armed = true;
      expect(await resetting.getOrNull('/api/v1/namespaces/default/configmaps/nope'), 'the second GET, sent again').to.equal(null);
      expect(connections).to.equal(2);
    } finally {
      resetting.close();
      for (const sock of open) sock.destroy();
      await new Promise<void>((r) => forwarder.close(() => r()));
    }
  });

  describe('informer', () => {
    let informer: ResourceInformer<KubeObject>;
    const seen: string[] = [];
    before(async () => {
      k8s.kubectlOk(['create', 'namespace', 'inf']);
      k8s.kubectlOk(['-n', 'inf', 'create', 'configmap', 'before', '--from-literal=a=1']);
      informer = startInformer<KubeObject>(client, '/api/v1/namespaces/inf/configmaps', { logger: silentLogger, backoff: { initialMs: 200, maxMs: 1000 } });
      for (const ev of ['add', 'update', 'delete'] as const) informer.on(ev, (o) => seen.push(`${ev} ${o.metadata?.name}`));
      await informer.synced();
    });
    after(async () => {
      await informer?.stop();
    });

    it('Should list first, then report creates, updates and deletes from the watch', async () => {
      expect(informer.list('inf').map((o) => o.metadata?.name)).to.include('before');
      expect(seen).to.include('add before');
      k8s.kubectlOk(['-n', 'inf', 'create', 'configmap', 'later', '--from-literal=a=1']);
      k8s.kubectlOk(['-n', 'inf', 'patch', 'configmap', 'later', '-p', '{"data":{"a":"2"}}']);
      k8s.kubectlOk(['-n', 'inf', 'delete', 'configmap', 'before']);
      await waitFor('the watch events', () => ['add later', 'update later', 'delete before'].every((e) => seen.includes(e)), 10_000);
      expect(informer.get('before', 'inf')).to.equal(undefined);
      expect((informer.get('later', 'inf') as { data?: Record<string, string> }).data).to.deep.equal({ a: '2' });
    });

    it('Should relist after 410 Gone when the restarted API server no longer has its resourceVersion, and see what changed after', async () => {
      const listsBefore = informer.listCount();
      // A write the informer does not watch (a Secret) moves etcd past the informer's resourceVersion.
      // The restarted API server's watch cache starts at etcd's current revision, so the informer's
      // watch, resumed from its older resourceVersion, gets 410 Gone ("too old resource version"),
      // and only a new list brings it back.
      k8s.kubectlOk(['-n', 'inf', 'create', 'secret', 'generic', 'moves-etcd-on', '--from-literal=a=1']);
      await k8s.restart();
      k8s.kubectlOk(['-n', 'inf', 'create', 'configmap', 'after-restart', '--from-literal=a=1']);
      k8s.kubectlOk(['-n', 'inf', 'delete', 'configmap', 'later']);
      await waitFor('the informer to catch up after the restart', () => informer.get('after-restart', 'inf') !== undefined && informer.get('later', 'inf') === undefined, 30_000, 200);
      expect(seen).to.include('delete later');
      expect(informer.listCount(), 'listed again after the 410').to.be.greaterThan(listsBefore);
    });
  });

  describe('Lease leader election', () => {
    const electors: LeaderElector[] = [];
    after(async () => {
      for (const e of electors) await e.stop();
    });

    it('Should elect exactly one of two candidates, and hand over when the leader stops', async () => {
      const log: string[] = [];
      const make = (id: string): LeaderElector => {
        const e = new LeaderElector(
          { namespace: 'default', name: 'election', identity: id, leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 },
          { client, logger: silentLogger, onStartedLeading: () => log.push(`${id} leads`), onStoppedLeading: () => log.push(`${id} stops`) },
        );
        electors.push(e);
        return e;
      };
      const a = make('a');
      const b = make('b');
      a.start();
      b.start();
      await waitFor('a leader', () => a.isLeader() || b.isLeader(), 10_000);
      await new Promise((r) => setTimeout(r, 1000));
      expect([a.isLeader(), b.isLeader()].filter(Boolean), 'exactly one leader').to.have.length(1);
      const [leader, follower] = a.isLeader() ? [a, b] : [b, a];
      const lease = JSON.parse(k8s.kubectlOk(['-n', 'default', 'get', 'lease', 'election', '-o', 'json'])) as { spec: { holderIdentity: string } };
      expect(lease.spec.holderIdentity).to.equal(leader === a ? 'a' : 'b');
      await leader.stop();
      // Released: the follower takes over within a retry period or two, not after the 3 s duration.
      await waitFor('the follower to lead', () => follower.isLeader(), 2500, 50);
    });

    it('Should renew the lease it holds with one update per retry period, reading it only to decide again', async () => {
      const counted = await KubeClient.connect({ kubeconfig: k8s.kubeconfig });
      const calls: string[] = [];
      const request = counted.request.bind(counted);
      counted.request = ((method: string, path: string, opts?: Parameters<KubeClient['request']>[2]) => {
        if (path.includes('/leases/renewing')) calls.push(method);
        return request(method, path, opts);
      }) as KubeClient['request'];
      const e = new LeaderElector({ namespace: 'default', name: 'renewing', identity: 'me', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 200 }, { client: counted, logger: silentLogger });
      electors.push(e);
      e.start();
      await waitFor('leadership', () => e.isLeader(), 10_000);
      const from = calls.length;
      await waitFor('five renewals', () => calls.slice(from).filter((m) => m === 'PUT').length >= 5, 10_000, 50);
      expect(calls.slice(from).filter((m) => m !== 'PUT'), 'no read between renewals').to.deep.equal([]);
      // Another writer: the next renewal gets 409, and only then is the lease read, and lost.
      k8s.kubectlOk(['-n', 'default', 'patch', 'lease', 'renewing', '--type=merge', '-p', '{"spec":{"holderIdentity":"thief","leaseDurationSeconds":60}}']);
      await waitFor('leadership lost', () => !e.isLeader(), 5_000, 50);
      expect(calls.slice(from)).to.include('GET');
      await e.stop();
    });

    it('Should stop leading when another writer takes the lease', async () => {
      const e = new LeaderElector({ namespace: 'default', name: 'stolen', identity: 'me', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 }, { client, logger: silentLogger });
      electors.push(e);
      e.start();
      await waitFor('leadership', () => e.isLeader(), 10_000);
      k8s.kubectlOk(['-n', 'default', 'patch', 'lease', 'stolen', '--type=merge', '-p', '{"spec":{"holderIdentity":"thief","leaseDurationSeconds":60}}']);
      await waitFor('leadership lost', () => !e.isLeader(), 5_000, 50);
    });
  });
});
