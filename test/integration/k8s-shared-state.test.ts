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
 *   once, on the new leader.
 */
import { expect } from 'chai';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, makeTmpDir, requireKubeApiServer, startKubeApiServer, trellisSync, type KubeApiServer } from '@trellis/testkit';
import { adminRaw, FakeSidecar, initCa, joinToken, startControlPlaneProcess, TD, waitFor, type ControlPlaneProcess } from './control-plane-harness';

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
});
