/**
 * Two `trellis control-plane` replicas against one real API server (1.20),
 * configured as deploy/control-plane.yaml configures them: each with its
 * own copy of the CA dir (the init container's copy of Secret trellis-ca),
 * its own ServiceAccount's token and the shipped RBAC only. What they share
 * lives on the API server:
 *
 * - a join token spent on one replica is refused on the other (its use is a
 *   create-only object);
 * - a revocation made through one replica's admin API cuts the other's
 *   stream of that identity within 2 s (a watched ConfigMap);
 * - the replica holding the Lease drives a root rotation; killed in the
 *   middle (SIGKILL), the other takes the Lease and finishes the pending
 *   step from the state committed to Secret trellis-ca: the switch happens
 *   once, on the new leader;
 * - a sidecar whose join token attested a service, labels and ports on
 *   the leader renews its SVID on another replica after the leader is
 *   killed: what the token attested is a shared record (one watched
 *   ConfigMap per SVID), not a file in the dead replica's CA dir;
 * - a record that cannot be written (the Role without create) is counted
 *   and makes the replica not ready until a retry lands;
 * - attestation records in process: 3,000 identities' records written
 *   through one replica are read on the other, one object each; a record is
 *   never overwritten; the leader deletes expired ones; and the records the
 *   previous version kept in one ConfigMap are still honoured.
 */
import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromJoinToken, KubeAttestationRecords, startKubeSharedState, type SharedState, type WorkloadAttestation } from '@trellis/control-plane';
import { KubeClient } from '@trellis/kubernetes';
import { silentLogger } from '@trellis/shared';
import { REPO_ROOT, makeTmpDir, requireKubeApiServer, startKubeApiServer, trellisSync, type KubeApiServer } from '@trellis/testkit';
import { adminGet, adminRaw, FakeSidecar, initCa, joinToken, metricValue, startControlPlaneProcess, TD, waitFor, type ControlPlaneProcess } from './control-plane-harness';

type Obj = Record<string, any>;

describe('control-plane replicas sharing their state through a real API server', function () {
  this.timeout(120_000);
  const tmp = makeTmpDir('trellis-k8s-state-');
  const caDir = join(tmp.dir, 'ca');
  const policyDir = join(tmp.dir, 'policies');
  let k8s: KubeApiServer;
  let kubeconfig: string;
  const replicas: ControlPlaneProcess[] = [];
  const sidecars: FakeSidecar[] = [];

  const kubectl = (args: string[], input?: string): string => k8s.kubectlOk(args, input === undefined ? {} : { input });
  const getJson = (args: string[]): Obj | null => {
    const r = k8s.kubectl(['get', ...args, '-o', 'json']);
    return r.status === 0 ? (JSON.parse(r.stdout) as Obj) : null;
  };
  const caSecret = (): Record<string, string> => Object.fromEntries(Object.entries((getJson(['-n', 'trellis-system', 'secret', 'trellis-ca'])?.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  const sidecar = (addresses: string[], name: string, token: string, o: { reject?: (type: string, version: string) => string | null } = {}): FakeSidecar => {
    const s = new FakeSidecar({ addresses, caDir, spiffeId: `spiffe://${TD}/ns/shop/sa/${name}`, token: () => token, namespace: 'shop', reject: o.reject });
    sidecars.push(s);
    return s.start();
  };
  /**
   * Runs `body` while the control plane's Role, as shipped, lacks create on ConfigMaps and the ClusterRole
   * (which grants it too, for trust-bundle ConfigMaps these replicas do not write) is unbound; then restores both.
   */
  const withoutConfigMapCreate = async (body: () => Promise<void>): Promise<void> => {
    const rbac = readFileSync(join(REPO_ROOT, 'deploy', 'rbac.yaml'), 'utf8');
    const role = rbac.split(/^---$/m).find((d) => /kind: Role\n/.test(d) && d.includes('name: trellis-control-plane\n'))!;
    const noCreate = role.replace('verbs: ["create", "list", "watch", "delete"]', 'verbs: ["list", "watch", "delete"]');
    expect(noCreate, 'the Role\'s ConfigMap rule').to.not.equal(role);
    kubectl(['apply', '-f', '-'], noCreate);
    kubectl(['delete', 'clusterrolebinding', 'trellis-control-plane']);
    try {
      await waitFor(() => k8s.kubectl(['auth', 'can-i', 'create', 'configmaps', '--as', 'system:serviceaccount:trellis-system:trellis-control-plane', '-n', 'trellis-system']).stdout.trim() === 'no', 'the Role to lose create');
      await body();
    } finally {
      kubectl(['apply', '-f', join(REPO_ROOT, 'deploy', 'rbac.yaml')]);
    }
  };
  const leaderOf = (): ControlPlaneProcess | undefined => replicas.find((p) => p.child.exitCode === null && p.child.signalCode === null && p.logs.some((l) => l.includes('"msg":"became leader"')) && !p.logs.some((l) => l.includes('"msg":"stopped leading"')));

  before(async function () {
    this.timeout(120_000);
    requireKubeApiServer(this, 'the shared-state Kubernetes tests');
    k8s = await startKubeApiServer({ noControllerManager: true });
    kubectl(['create', 'namespace', 'trellis-system']);
    kubectl(['apply', '-f', join(REPO_ROOT, 'deploy', 'rbac.yaml')]);
    const token = kubectl(['-n', 'trellis-system', 'create', 'token', 'trellis-control-plane', '--duration', '1h']).trim();
    kubeconfig = join(tmp.dir, 'control-plane.kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "${k8s.server}", certificate-authority: "${join(k8s.pkiDir, 'ca.crt')}"}}]\nusers: [{name: u, user: {token: "${token}"}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`);
    initCa(caDir);
    joinToken(caDir, `spiffe://${TD}/ns/shop/sa/first`); // makes the join-token key, which the Secret carries to every replica
    mkdirSync(policyDir);
    // Secret trellis-ca as trellis install makes it, plus the join-token key.
    const files: Record<string, string> = { 'root.pem': 'root.pem', 'intermediate.pem': 'intermediate.pem', 'intermediate.key': 'intermediate.key', 'chain.pem': 'chain.pem', 'join-tokens.hmac.key': 'join-tokens/hmac.key' };
    kubectl(['-n', 'trellis-system', 'create', 'secret', 'generic', 'trellis-ca', ...Object.entries(files).map(([k, p]) => `--from-file=${k}=${join(caDir, p)}`)]);
    for (const name of ['a', 'b']) {
      // Each pod's init container copies the Secret into its own writable CA dir.
      cpSync(caDir, join(tmp.dir, `ca-${name}`), { recursive: true });
      const p = await startControlPlaneProcess(join(tmp.dir, `ca-${name}`), policyDir, ['--kubeconfig', kubeconfig, '--leader-lease', '3s', '--root-rotation-auth', 'admin-identity', '--no-policy-crds', '--no-root-cert-configmaps']);
      replicas.push(p);
    }
    await waitFor(() => leaderOf() !== undefined, 'one replica to take the Lease', 20_000);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') for (const p of replicas) process.stderr.write(`--- replica ${p.address}\n${p.logs.slice(-40).join('\n')}\n`);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    for (const p of replicas) await p.stop('SIGKILL');
    await k8s?.stop();
    tmp.cleanup();
  });

  it('Should refuse on replica B a join token whose only use was spent on replica A', async () => {
    const [a, b] = replicas;
    const token = joinToken(caDir, `spiffe://${TD}/ns/shop/sa/once`, ['--uses', '1']);
    const first = sidecar([a!.address], 'once', token);
    await first.rotate();
    const uses = getJson(['-n', 'trellis-system', 'configmaps', '-l', 'trellis.dev/join-token-use=true'])!.items as Obj[];
    expect(uses.map((u) => u.data.use)).to.deep.equal(['1']);
    const second = sidecar([b!.address], 'once', token);
    await waitFor(() => second.ends.some((e) => e.serverCode === 'TRELLIS_CP_TOKEN_SPENT'), 'replica B to refuse the spent token');
    expect(second.creds).to.equal(null);
    first.stop();
    second.stop();
  });

  it('Should cut replica B\'s stream of an identity revoked through replica A within 2 s', async () => {
    const [a, b] = replicas;
    const victim = sidecar([b!.address], 'victim', joinToken(caDir, `spiffe://${TD}/ns/shop/sa/victim`, ['--uses', '5']));
    await victim.rotate();
    await waitFor(() => victim.last('revocations') !== undefined, 'the victim to be synced on replica B');
    const t0 = Date.now();
    const r = await adminRaw(a!, '/lifecycle/revoke', JSON.stringify({ spiffeId: `spiffe://${TD}/ns/shop/sa/victim`, reason: 'test' }));
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    await waitFor(() => victim.ends.some((e) => e.serverCode === 'TRELLIS_CP_CERT_REJECTED'), 'replica B to cut the revoked identity', 2000);
    process.stdout.write(`      (B cut the stream ${victim.ends.length > 0 ? Date.now() - t0 : '?'} ms after the revocation was sent to A)\n`);
    const cm = getJson(['-n', 'trellis-system', 'configmap', 'trellis-revocations'])!;
    expect(JSON.parse(cm.data['revocations.json']).spiffeIds).to.deep.equal([`spiffe://${TD}/ns/shop/sa/victim`]);
    victim.stop();
    // Replica B refuses the identity however it comes back, even with a fresh join token (the shared list, not a file of its own).
    const again = sidecar([b!.address], 'victim', joinToken(caDir, `spiffe://${TD}/ns/shop/sa/victim`));
    await waitFor(() => again.ends.some((e) => e.serverCode === 'TRELLIS_CP_CERT_REJECTED'), 'replica B to refuse a fresh token of the revoked identity');
    expect(again.creds).to.equal(null);
    again.stop();
  });

  it('Should finish a root rotation on the other replica when the leader is killed in the middle, taking each step once', async () => {
    const leader = leaderOf()!;
    const follower = replicas.find((p) => p !== leader)!;
    const tok = (n: string): string => joinToken(caDir, `spiffe://${TD}/ns/shop/sa/${n}`, ['--uses', '5']);
    const onLeader = sidecar([leader.address, follower.address], 'on-leader', tok('on-leader'));
    // The follower's sidecar refuses the two-root bundle until told otherwise: the switch must wait for it.
    let hold = true;
    const onFollower = sidecar([follower.address], 'on-follower', tok('on-follower'), { reject: (type) => (hold && type === 'bundle' && onFollower.count('bundle') > 1 ? 'held back by the test' : null) });
    await Promise.all([onLeader.rotate(), onFollower.rotate()]);
    await waitFor(() => onLeader.last('bundle') !== undefined && onFollower.last('bundle') !== undefined, 'both sidecars to hold the bundle');
    const oneRoot = onLeader.last('bundle');

    const r = trellisSync(['ca', 'rotate-root', '--admin', leader.admin, '--root-dir', join(tmp.dir, 'new-root'), '--reload-grace', '1s', '-o', 'json'], { env: leader.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.include({ phase: 'bundle', applied: 'none' });
    const started = caSecret();
    expect(JSON.parse(started['root-rotation.json']!).phase, 'the start is committed to the Secret').to.equal('bundle');
    expect(started['next.intermediate.key'], 'with the prepared key, for whoever switches').to.be.a('string');
    // The leader's own sidecar holds both roots, and its report says so, before the leader dies.
    await waitFor(() => onLeader.last('bundle') !== oneRoot, 'the two-root bundle on the leader\'s sidecar');
    const twoRoots = onLeader.last('bundle')!;
    const reports = (): Obj => JSON.parse(getJson(['-n', 'trellis-system', 'configmap', 'trellis-control-plane-replicas'])!.data['replicas.json']).replicas as Obj;
    await waitFor(() => Object.values(reports()).some((x: Obj) => x.pid === leader.child.pid && x.bundleAcks[twoRoots] === 1), 'the leader to report its sidecar\'s ACK');
    expect(leader.logs.some((l) => l.includes('"msg":"root rotation advanced"')), 'the leader could not switch: the follower\'s sidecar holds back').to.equal(false);

    await leader.stop('SIGKILL');
    await waitFor(() => follower.logs.some((l) => l.includes('"msg":"became leader"')), 'the follower to take the Lease', 15_000);
    hold = false;
    onFollower.stop();
    onFollower.start(); // asks again, and ACKs the two-root bundle this time
    await waitFor(() => JSON.parse(caSecret()['root-rotation.json'] ?? '{}').phase === 'renew', 'the new leader to switch, committed to the Secret', 20_000);
    const after = caSecret();
    const state = JSON.parse(after['root-rotation.json']!) as { switchedAt: string; startedAt: string };
    expect(state.startedAt, 'the rotation the old leader started').to.equal(JSON.parse(started['root-rotation.json']!).startedAt);
    expect(after['intermediate.pem'], 'the switch made the prepared intermediate current').to.equal(started['next.intermediate.pem']);
    expect(after['root.pem']).to.contain(readFileSync(join(tmp.dir, 'new-root', 'root.pem'), 'utf8').trim());
    // The step is committed to the Secret before the replica logs it: wait for the line, then count.
    const switchLines = (): string[] => follower.logs.filter((l) => l.includes('"msg":"root rotation advanced"') && l.includes('"applied":"switch-intermediate"'));
    await waitFor(() => switchLines().length > 0, 'the new leader to log its switch');
    expect(switchLines(), 'switched once, by the new leader').to.have.length(1);
    // Its CA dir follows what it committed; the dead leader's copy is left behind.
    expect(readFileSync(join(tmp.dir, 'ca-' + (follower === replicas[0] ? 'a' : 'b'), 'intermediate.pem'), 'utf8')).to.equal(after['intermediate.pem']);
  });

  it('Should renew on another replica, with what its join token attested, the SVID a sidecar got from the leader before the leader was killed', async () => {
    const leader = leaderOf() ?? replicas.find((p) => p.child.exitCode === null && p.child.signalCode === null)!;
    const leaderDir = join(tmp.dir, `ca-${replicas.indexOf(leader) === 0 ? 'a' : 'b'}`);
    // A fresh replica, started as the Deployment starts one (its own copy of the CA dir, kept equal to the Secret).
    cpSync(leaderDir, join(tmp.dir, 'ca-c'), { recursive: true });
    const c = await startControlPlaneProcess(join(tmp.dir, 'ca-c'), policyDir, ['--kubeconfig', kubeconfig, '--leader-lease', '3s', '--root-rotation-auth', 'admin-identity', '--no-policy-crds', '--no-root-cert-configmaps']);
    replicas.push(c);
    const id = `spiffe://${TD}/ns/shop/sa/cart`;
    const token = joinToken(caDir, id, ['--service', 'cart', '--ports', '8443', '--labels', 'app=cart,track=stable']);
    // The leader's CA dir holds the current roots (the previous test rotated them).
    const cart = new FakeSidecar({ addresses: [leader.address, c.address], caDir: leaderDir, spiffeId: id, token: () => token, namespace: 'shop', service: 'cart', labels: { app: 'cart', track: 'stable' }, inboundPorts: [8443] });
    sidecars.push(cart);
    cart.start();
    const first = await cart.rotate();
    await waitFor(() => cart.last('bundle') !== undefined, 'the sidecar to be synced on the leader');

    await leader.stop('SIGKILL');
    // Its stream moves to replica C, authenticated by the SVID, and renews there: C must know what the token attested.
    let renewed: X509Certificate | Error | undefined;
    void cart.rotate().then((x) => (renewed = x), (err: Error) => (renewed = err));
    await waitFor(() => renewed !== undefined || cart.ends.some((e) => e.serverCode === 'TRELLIS_CP_ATTESTATION_MISMATCH'), 'the renewal on replica C', 20_000);
    expect(cart.ends.map((e) => e.serverCode), 'replica C refused the attested claims').to.not.include('TRELLIS_CP_ATTESTATION_MISMATCH');
    if (!(renewed instanceof X509Certificate)) throw renewed!;
    expect(renewed.serialNumber).to.not.equal(first.serialNumber);
    const renewedSerial = renewed.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
    expect(c.logs.some((l) => l.includes('"msg":"svid issued"') && l.toLowerCase().includes(renewedSerial)), 'renewed by replica C').to.equal(true);
    // The renewal carries the attestation forward, in the shared record (one object per SVID), for the next replica to die.
    const record = (x: { serialNumber: string }): Obj | undefined => {
      const cm = getJson(['-n', 'trellis-system', 'configmap', `trellis-attestation-${x.serialNumber.toLowerCase().replace(/^0+(?=.)/, '')}`]);
      return cm ? (JSON.parse(cm.data['record.json']) as Obj) : undefined;
    };
    expect(record(renewed)).to.deep.include({ spiffeId: id, source: 'join-token', service: 'cart', labels: { app: 'cart', track: 'stable' }, inboundPorts: [8443] });
    expect(record(first)?.service, 'the first SVID\'s record, written by the dead leader').to.equal('cart');
    cart.stop();
  });

  it('Should count attestation records it cannot write and be not ready, naming them, while the Role lacks create, then be ready again by itself once it has it; the SVIDs still go out', async () => {
    const live = replicas.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    const r = live.at(-1)!;
    const rDir = join(tmp.dir, `ca-${'abc'[replicas.indexOf(r)]}`);
    const id = `spiffe://${TD}/ns/shop/sa/ledger`;
    const token = joinToken(caDir, id, ['--service', 'ledger', '--ports', '9443']);
    const ledger = new FakeSidecar({ addresses: [r.address], caDir: rDir, spiffeId: id, token: () => token, namespace: 'shop', service: 'ledger', inboundPorts: [9443] });
    sidecars.push(ledger);
    ledger.start();
    await ledger.rotate();
    expect((await adminGet(r, '/readyz')).status).to.equal(200);
    const failures = (): Promise<number> => metricValue(r, 'trellis_state_write_failures_total', 'store="attestations",reason="TRELLIS_K8S_FORBIDDEN"');
    const before = await failures();
    // Without create on ConfigMaps the attestation record of a renewal cannot be written.
    await withoutConfigMapCreate(async () => {
      const renewed = await ledger.rotate();
      expect(renewed.subjectAltName, 'the SVID goes out: a replica without the record attests the identity alone').to.include(id);
      await waitFor(async () => (await failures()) > before, 'the failed write to be counted');
      const ready = await adminGet(r, '/readyz');
      expect(ready.status).to.equal(503);
      expect(ready.body).to.match(/attestations.*FORBIDDEN/);
      expect(await metricValue(r, 'trellis_state_writable', 'store="attestations"')).to.equal(0);
    });
    // The background retry lands (backoff of at most a few seconds after so short a failure) and clears it.
    await waitFor(async () => (await adminGet(r, '/readyz')).status === 200, 'ready again once a write lands', 40_000);
    expect(await metricValue(r, 'trellis_state_writable', 'store="attestations"')).to.equal(1);
    const records = getJson(['-n', 'trellis-system', 'configmaps', '-l', 'trellis.dev/attestation-record=true'])!.items as Obj[];
    expect(records.filter((o) => JSON.parse(o.data['record.json']).spiffeId === id), 'both SVIDs\' records, the second written by the retry').to.have.length(2);
    ledger.stop();
  });

  it('Should be not ready while join-token uses cannot be recorded, through every replica report it writes meanwhile, and ready again by itself once they can', async () => {
    const live = replicas.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    const r = live.at(-1)!;
    const rDir = join(tmp.dir, `ca-${'abc'[replicas.indexOf(r)]}`);
    await waitFor(async () => (await adminGet(r, '/readyz')).status === 200, 'the replica to be ready', 40_000);
    const failures = (): Promise<number> => metricValue(r, 'trellis_state_write_failures_total', 'store="join-token-uses",reason="TRELLIS_K8S_FORBIDDEN"');
    const before = await failures();
    // The time of r's own last heartbeat in the shared replica reports (its entry carries its pid).
    const ownReportAt = (): string | undefined => {
      const text = getJson(['-n', 'trellis-system', 'configmap', 'trellis-control-plane-replicas'])?.data?.['replicas.json'] as string | undefined;
      const set = (JSON.parse(text ?? '{}') as { replicas?: Record<string, { pid: number; at: string }> }).replicas ?? {};
      return Object.values(set).find((e) => e.pid === r.child.pid)?.at;
    };
    const id = `spiffe://${TD}/ns/shop/sa/newcomer`;
    const token = joinToken(caDir, id);
    const newcomer = new FakeSidecar({ addresses: [r.address], caDir: rDir, spiffeId: id, token: () => token, namespace: 'shop' });
    sidecars.push(newcomer);
    // Without create on ConfigMaps a use cannot be recorded, while the replica report, an update of its own
    // ConfigMap, still can.
    await withoutConfigMapCreate(async () => {
      newcomer.start();
      await waitFor(async () => (await failures()) > before, 'the refused use to be counted');
      // One refusal is enough: no retry may mark the store failing again behind a report that cleared it.
      newcomer.stop();
      expect(newcomer.creds, 'no SVID without a recorded use').to.equal(null);
      expect(ownReportAt(), "this replica's entry in the shared replica reports").to.be.a('string');
      // Two reports of its own written after the failure: neither makes the replica ready.
      for (let i = 0; i < 2; i++) {
        const at = ownReportAt();
        await waitFor(() => ownReportAt() !== at, 'a replica report of its own written after the failure', 30_000);
      }
      const ready = await adminGet(r, '/readyz');
      expect(ready.status, ready.body).to.equal(503);
      expect(ready.body).to.match(/join-token-uses.*FORBIDDEN/);
      expect(await metricValue(r, 'trellis_state_writable', 'store="join-token-uses"')).to.equal(0);
    });
    // The probe (a use record created and deleted, as a join would) works again on a refresh: ready, with no join needed.
    await waitFor(async () => (await adminGet(r, '/readyz')).status === 200, 'ready again once a use can be recorded', 40_000);
    expect(await metricValue(r, 'trellis_state_writable', 'store="join-token-uses"')).to.equal(1);
    const leftovers = (getJson(['-n', 'trellis-system', 'configmaps', '-l', 'trellis.dev/join-token-use=true'])!.items as Obj[]).filter((o) => String(o.metadata.name).includes('-probe-'));
    expect(leftovers.map((o) => o.metadata.name), 'probe records are deleted').to.deep.equal([]);
    newcomer.start();
    expect((await newcomer.rotate()).subjectAltName).to.include(id);
    newcomer.stop();
  });

  describe('attestation records on the API server, replicas in process (the classes `trellis control-plane` runs, with its ServiceAccount and RBAC)', () => {
    const IDENTITIES = 3000;
    const states: SharedState[] = [];
    const writers: KubeAttestationRecords[] = [];
    const clients: KubeClient[] = [];
    const client = (): Promise<KubeClient> => KubeClient.connect({ kubeconfig });
    const replica = async (name: string): Promise<SharedState> => {
      const dir = join(tmp.dir, `scale-${name}`);
      mkdirSync(dir);
      const state = await startKubeSharedState({ namespace: 'trellis-system', caDir: dir, syncTimeoutMs: 20_000 }, { client: await client(), logger: silentLogger, clock: () => new Date(), isLeader: () => false });
      states.push(state);
      return state;
    };
    after(() => {
      for (const s of states) s.close();
      for (const w of writers) w.stop();
      k8s?.kubectl(['-n', 'trellis-system', 'delete', 'configmaps', '-l', 'trellis.dev/attestation-record=true', '--wait=false']);
    });

    it(`Should keep the records of ${IDENTITIES} attested identities written through one replica readable on the other, one object each, none rewritten by a later write`, async function () {
      this.timeout(120_000); // ~25 s on an idle 2-core machine (the API server's creates); more when the machine is shared
      // Replica A's shared writes (what its store does after the CA-dir write, which is left out: 3,000 fsyncs are not what is tested here); replica B as `trellis control-plane` wires it.
      const a = new KubeAttestationRecords({ namespace: 'trellis-system' }, { client: await client(), logger: silentLogger, isLeader: () => false });
      writers.push(a);
      a.start();
      const b = await replica('b');
      const now = Date.now();
      const serial = (i: number): string => `7${i.toString(16).padStart(6, '0')}${'5a'.repeat(12)}`;
      const id = (i: number): string => `spiffe://${TD}/ns/shop/sa/w${i}`;
      // Labels as a Deployment's pods carry them: about 340 bytes a record, so 3,000 outgrow the one ConfigMap the previous version wrote.
      const attestation = (i: number): WorkloadAttestation =>
        fromJoinToken(id(i), { service: `svc-${i}`, labels: { 'app.kubernetes.io/name': `svc-${i}`, 'app.kubernetes.io/part-of': 'shop', 'app.kubernetes.io/version': '1.4.2', 'pod-template-hash': '7d9f8c6b5' }, inboundPorts: [8443] });
      await a.add(serial(0), { attestation: attestation(0), notAfterMs: now + 3600_000 });
      const firstName = `trellis-attestation-${serial(0)}`;
      const firstVersion = getJson(['-n', 'trellis-system', 'configmap', firstName])!.metadata.resourceVersion as string;
      let next = 1;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < IDENTITIES) {
          const i = next++;
          await a.add(serial(i), { attestation: attestation(i), notAfterMs: now + 3600_000 });
        }
      }));
      const seen = (): number => {
        let n = 0;
        for (let i = 0; i < IDENTITIES; i++) if (b.attestations.recall(serial(i), id(i), now) !== null) n++;
        return n;
      };
      await waitFor(() => seen() === IDENTITIES, `replica B to see ${IDENTITIES} records`, 30_000);
      for (let i = 0; i < IDENTITIES; i++) expect(b.attestations.recall(serial(i), id(i), now), `record ${i} on replica B`).to.deep.equal(attestation(i));
      expect(b.attestations.recall(serial(1), id(2), now), 'never for another identity').to.equal(null);
      expect(b.attestations.liveIdentities(now).size).to.be.at.least(IDENTITIES);
      const names = k8s.kubectlOk(['-n', 'trellis-system', 'get', 'configmaps', '-l', 'trellis.dev/attestation-record=true', '-o', 'name']).split('\n').filter((l) => l.endsWith('5a'.repeat(12)));
      expect(names, 'one object per SVID').to.have.length(IDENTITIES);
      expect(getJson(['-n', 'trellis-system', 'configmap', firstName])!.metadata.resourceVersion, 'the first record, untouched by the writes after it').to.equal(firstVersion);
    });

    it('Should take a record written again with the same content as written, refuse one of other content, and have the leader alone delete the records of expired SVIDs', async () => {
      const now = Date.now();
      const writer = (leader: boolean): KubeAttestationRecords => {
        const r = new KubeAttestationRecords({ namespace: 'trellis-system' }, { client: clients[0]!, logger: silentLogger, isLeader: () => leader });
        writers.push(r);
        r.start();
        return r;
      };
      clients.push(await client());
      const [follower, leader] = [writer(false), writer(true)];
      await Promise.all([follower.synced(), leader.synced()]);
      const entry = (service: string, notAfterMs: number): { attestation: WorkloadAttestation; notAfterMs: number } => ({ attestation: fromJoinToken(`spiffe://${TD}/ns/shop/sa/gc`, { service, labels: {}, inboundPorts: [] }), notAfterMs });
      await follower.add('6e01', entry('gc', now + 3600_000));
      await follower.add('6e01', entry('gc', now + 3600_000)); // a retry whose first answer was lost
      let refused: unknown;
      await follower.add('6e01', entry('other', now + 3600_000)).catch((err: unknown) => (refused = err));
      expect(refused).to.include({ code: 'TRELLIS_CP_ATTESTATION_STORE' }).and.to.have.nested.property('details.reason', 'CONFLICT');
      await follower.add('6e02', entry('gc', now + 1000));
      await waitFor(() => leader.get('6e02') !== null && leader.get('6e01') !== null, 'the leader to see both records');
      expect(await follower.sweep(), 'a follower deletes nothing').to.equal(0);
      await new Promise((r) => setTimeout(r, 1100));
      expect(await leader.sweep(), 'the expired record, once').to.equal(1);
      await waitFor(() => follower.get('6e02') === null, 'the deletion to reach the other replica');
      expect(getJson(['-n', 'trellis-system', 'configmap', 'trellis-attestation-6e02'])).to.equal(null);
      expect(follower.get('6e01')?.attestation.workload.service, 'the live one stays').to.equal('gc');
    });

    it('Should honour on an upgraded replica the records the previous version kept in ConfigMap trellis-attestations, until they expire', async () => {
      const b = states[0] ?? (await replica('legacy'));
      const now = Date.now();
      const id = `spiffe://${TD}/ns/shop/sa/old`;
      const record = (notAfterMs: number): Obj => ({ spiffeId: id, source: 'join-token', service: 'old', labels: { app: 'old' }, inboundPorts: [7443], notAfter: new Date(notAfterMs).toISOString() });
      // As the previous version wrote it: every record in one document.
      kubectl(['-n', 'trellis-system', 'create', 'configmap', 'trellis-attestations', `--from-literal=attestations.json=${JSON.stringify({ version: 1, records: { '6f01': record(now + 3600_000), '6f02': record(now - 1000) } })}`]);
      await waitFor(() => b.attestations.recall('6f01', id, now) !== null, 'the upgraded replica to read the old document');
      expect(b.attestations.recall('6f01', id, now)).to.deep.equal(fromJoinToken(id, { service: 'old', labels: { app: 'old' }, inboundPorts: [7443] }));
      expect(b.attestations.recall('6f02', id, now), 'an expired one attests nothing').to.equal(null);
      expect(b.attestations.recall('6f01', id, now + 3600_000)).to.equal(null);
      expect(b.attestations.liveIdentities(now).has(id)).to.equal(true);
    });
  });
});
