/**
 * `trellis install` and `trellis uninstall`: Trellis on a cluster in one
 * command. Wiring only: deploy/ is read by install/deploy-manifests.ts,
 * adapted by install/install-plan.ts (pure) to the options and to what the
 * API server supports, and applied by install/apply-objects.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { CA_FILES, initCertificateAuthority } from '@trellis/control-plane';
import { KubeClient, detectApiFeatures, fetchDiscoveryFacts, type ApiFeatures, type KubeObject } from '@trellis/kubernetes';
import { UsageError, parseCertificate, parseDuration, pemToDer, trustDomainOfCaUriSans } from '@trellis/shared';
import type { Command, CommandContext } from '../command';
import { flag, optionalString } from '../flags';
import { applyObjects, deleteObjects, waitGone, type ApplyResult } from '../install/apply-objects';
import { DEFAULT_DEPLOY_DIR, readDeployManifests } from '../install/deploy-manifests';
import { CA_SECRET_NAME, DEFAULT_TRUST_DOMAIN, installPlan } from '../install/install-plan';

const NAMESPACE = 'trellis-system';
/** What goes into the CA Secret: never root.key. */
const CA_SECRET_FILES = [CA_FILES.intermediateCert, CA_FILES.intermediateKey, CA_FILES.chain, CA_FILES.rootCert];

/** The trust domain an intermediate certificate is for (its `spiffe://TD` URI SAN). */
function trustDomainOf(intermediatePem: string, source: string): string {
  const [der] = pemToDer(intermediatePem, 'CERTIFICATE', source);
  const td = der ? trustDomainOfCaUriSans(parseCertificate(der).subjectAltName.uris, 'the intermediate') : undefined;
  if (!td?.ok) throw new UsageError(`${source}: the intermediate names no spiffe://TRUST-DOMAIN${td ? ` (${td.reason})` : ''}; is this a Trellis CA?`, { file: source });
  return td.trustDomain;
}

/** The CA files to put in the Secret, from --ca-dir or a CA made with --generate-ca (root key stays local). */
async function caFilesFrom(ctx: CommandContext): Promise<{ files: Record<string, string>; trustDomain: string; made?: string } | undefined> {
  const caDir = optionalString(ctx, 'ca-dir');
  const generate = flag(ctx, 'generate-ca');
  if (caDir !== undefined && generate) throw new UsageError('give either --ca-dir or --generate-ca, not both', { flag: 'ca-dir' });
  let dir: string;
  let made: string | undefined;
  if (generate) {
    const td = optionalString(ctx, 'trust-domain');
    if (td === undefined) throw new UsageError('--generate-ca needs --trust-domain TD (the mesh trust domain; cluster.local if unsure)', { flag: 'trust-domain' });
    dir = resolve(ctx.cwd, optionalString(ctx, 'ca-out') ?? 'trellis-ca');
    if (existsSync(join(dir, CA_FILES.intermediateCert))) {
      const have = trustDomainOf(readFileSync(join(dir, CA_FILES.intermediateCert), 'utf8'), dir);
      if (have !== td) throw new UsageError(`${dir} holds a CA for ${have}, not ${td}; choose another --ca-out`, { flag: 'ca-out' });
    } else {
      await initCertificateAuthority(dir, { trustDomain: td });
      made = dir;
    }
  } else if (caDir !== undefined) {
    dir = resolve(ctx.cwd, caDir);
  } else {
    return undefined;
  }
  const files: Record<string, string> = {};
  for (const f of CA_SECRET_FILES) {
    try {
      files[f] = readFileSync(join(dir, f), 'utf8');
    } catch {
      throw new UsageError(`${dir}: no ${f} (a CA dir from trellis ca init, with its intermediate key; an HSM-backed CA is not installable this way)`, { flag: generate ? 'ca-out' : 'ca-dir' });
    }
  }
  return { files, trustDomain: trustDomainOf(files[CA_FILES.intermediateCert]!, join(dir, CA_FILES.intermediateCert)), ...(made ? { made } : {}) };
}

async function connect(ctx: CommandContext): Promise<KubeClient> {
  const kubeconfig = optionalString(ctx, 'kubeconfig') ?? ctx.env.KUBECONFIG?.split(':')[0];
  return KubeClient.connect(kubeconfig !== undefined ? { kubeconfig: resolve(ctx.cwd, kubeconfig), ...(optionalString(ctx, 'context') ? { context: optionalString(ctx, 'context') } : {}) } : { env: ctx.env });
}

function printResults(ctx: CommandContext, results: readonly ApplyResult[]): void {
  for (const r of results) ctx.stdout.write(`${r.ref} ${r.result}\n`);
}

async function waitReady(ctx: CommandContext, client: KubeClient, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const ready = async (): Promise<string[]> => {
    const waiting: string[] = [];
    for (const name of ['trellis-control-plane', 'trellis-injector']) {
      const d = await client.getOrNull<KubeObject & { status?: { availableReplicas?: number } }>(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${name}`);
      if (!d || !(d.status?.availableReplicas && d.status.availableReplicas > 0)) waiting.push(`Deployment/${name} available`);
    }
    const mwc = await client.getOrNull<KubeObject & { webhooks?: Array<{ clientConfig?: { caBundle?: string } }> }>('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/trellis-sidecar-injector');
    if (!mwc?.webhooks?.every((w) => w.clientConfig?.caBundle)) waiting.push('the injector to publish its caBundle');
    return waiting;
  };
  let waiting = await ready();
  while (waiting.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2000));
    waiting = await ready();
  }
  if (waiting.length > 0) ctx.stderr.write(`trellis install: not ready after ${Math.round(timeoutMs / 1000)} s, still waiting for: ${waiting.join(', ')} (kubectl -n ${NAMESPACE} get pods; kubectl -n ${NAMESPACE} logs deploy/trellis-injector)\n`);
  return waiting.length === 0;
}

export const commands: Command[] = [
  {
    name: 'install',
    summary: 'Install Trellis on a cluster in one step (namespace, CA Secret, RBAC, CRDs, control plane, injector, webhooks)',
    usage: 'trellis install [--kubeconfig FILE] [--ca-dir DIR | --generate-ca --trust-domain TD [--ca-out DIR]] [--image REF] [--dry-run -o yaml|json] [--no-wait] [--timeout 5m]',
    description: `Applies what deploy/ holds (server-side apply, field manager trellis-install), adapted to
what the API server serves (discovery: CRD CEL rules from 1.25, policy/v1 PDBs from 1.21,
native sidecars from 1.29), plus the CA Secret trellis-ca. Re-running changes nothing
(every object reports "unchanged"); the injector makes its own serving certificate and
writes the webhooks' caBundle, so there is nothing to do by hand.

  --kubeconfig FILE      the cluster (default $KUBECONFIG, else the in-cluster config)
  --context NAME         a kubeconfig context other than the current one
  --ca-dir DIR           an existing CA dir (trellis ca init / import): intermediate.pem,
                         intermediate.key, chain.pem and root.pem go into Secret trellis-ca;
                         root.key never does
  --generate-ca          make a new CA on this machine first (with --trust-domain TD) in
                         --ca-out DIR (default ./trellis-ca, reused when it exists); its root
                         key stays there: keep it offline
  --image REF            the trellis image (default ${'ghcr.io/trellis-mesh/trellis:0.1.0'})
  --manifests DIR        the deploy/ folder to read (default: the one beside this CLI)
  --dry-run              print the manifests instead of applying them (no cluster needed; with
                         --kubeconfig, adapted to that server); the CA Secret is left out
  -o yaml|json           the --dry-run format (default yaml)
  --no-wait              do not wait for the control plane and injector to become ready
  --timeout 5m           how long to wait for them
Without --ca-dir or --generate-ca, an existing trellis-ca Secret is kept (its trust domain is
used); on a first install one of them is required.`,
    options: {
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      'ca-dir': { type: 'string' },
      'generate-ca': { type: 'boolean' },
      'trust-domain': { type: 'string' },
      'ca-out': { type: 'string' },
      image: { type: 'string' },
      manifests: { type: 'string' },
      'dry-run': { type: 'boolean' },
      output: { type: 'string', short: 'o' },
      'no-wait': { type: 'boolean' },
      timeout: { type: 'string' },
    },
    async run(ctx) {
      const deploy = readDeployManifests(resolve(ctx.cwd, optionalString(ctx, 'manifests') ?? DEFAULT_DEPLOY_DIR));
      const image = optionalString(ctx, 'image');
      const dryRun = flag(ctx, 'dry-run');
      const format = optionalString(ctx, 'output') ?? 'yaml';
      if (!['yaml', 'json'].includes(format)) throw new UsageError(`-o must be yaml or json, got "${format}"`, { flag: 'output' });
      if (!dryRun && optionalString(ctx, 'output') !== undefined) throw new UsageError('-o goes with --dry-run', { flag: 'output' });
      const timeoutMs = parseDuration(optionalString(ctx, 'timeout') ?? '5m', 'timeout');

      if (dryRun) {
        let features: ApiFeatures | null = null;
        if (optionalString(ctx, 'kubeconfig') !== undefined) features = detectApiFeatures(await fetchDiscoveryFacts(await connect(ctx)));
        const ca = flag(ctx, 'generate-ca') || optionalString(ctx, 'ca-dir') !== undefined ? await caFilesFrom(ctx) : undefined;
        const trustDomain = ca?.trustDomain ?? optionalString(ctx, 'trust-domain') ?? DEFAULT_TRUST_DOMAIN;
        const { objects, notes } = installPlan(deploy, { image, trustDomain, namespace: NAMESPACE }, features);
        if (format === 'json') ctx.stdout.write(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }, null, 2) + '\n');
        else {
          ctx.stdout.write(`# trellis install --dry-run: ${objects.length} objects${notes.length ? `; ${notes.join('; ')}` : ''}.\n`);
          ctx.stdout.write(`# The CA Secret is not printed (it holds the intermediate key): create it with\n#   kubectl -n ${NAMESPACE} create secret generic ${CA_SECRET_NAME} ${CA_SECRET_FILES.map((f) => `--from-file=CA_DIR/${f}`).join(' ')}\n`);
          for (const o of objects) ctx.stdout.write(`---\n${stringify(o, { lineWidth: 0 })}`);
        }
        if (ca?.made) ctx.stderr.write(`made a new CA in ${ca.made}; its root key (${join(ca.made, CA_FILES.rootKey)}) stays on this machine: keep it offline\n`);
        return 0;
      }

      const client = await connect(ctx);
      const features = detectApiFeatures(await fetchDiscoveryFacts(client));
      if (!features.admissionRegistrationV1) throw new UsageError(`this API server (${features.serverVersion.gitVersion}) does not serve admissionregistration.k8s.io/v1; Trellis needs Kubernetes 1.16+ (1.20+ tested)`);
      let ca = await caFilesFrom(ctx);
      let trustDomain: string;
      if (ca) {
        trustDomain = ca.trustDomain;
        if (optionalString(ctx, 'trust-domain') !== undefined && optionalString(ctx, 'trust-domain') !== trustDomain) {
          throw new UsageError(`--trust-domain ${optionalString(ctx, 'trust-domain')} does not match the CA's (${trustDomain})`, { flag: 'trust-domain' });
        }
      } else {
        const existing = await client.getOrNull<KubeObject & { data?: Record<string, string> }>(`/api/v1/namespaces/${NAMESPACE}/secrets/${CA_SECRET_NAME}`);
        const pem = existing?.data?.[CA_FILES.intermediateCert];
        if (!pem) throw new UsageError(`no Secret ${NAMESPACE}/${CA_SECRET_NAME} yet: give --ca-dir DIR (an existing CA) or --generate-ca --trust-domain TD`, { flag: 'ca-dir' });
        trustDomain = trustDomainOf(Buffer.from(pem, 'base64').toString('utf8'), `Secret ${NAMESPACE}/${CA_SECRET_NAME}`);
        ca = undefined;
      }
      const { objects, notes } = installPlan(deploy, { image, trustDomain, namespace: NAMESPACE, ...(ca ? { caFiles: ca.files } : {}) }, features);
      for (const n of notes) ctx.stdout.write(`note: ${n}\n`);
      const results = await applyObjects(client, objects);
      printResults(ctx, results);
      const changed = results.filter((r) => r.result !== 'unchanged').length;
      ctx.stdout.write(`trellis install: ${results.length} objects on ${client.server} (${features.serverVersion.gitVersion}), ${changed} changed, trust domain ${trustDomain}\n`);
      if (ca?.made) ctx.stdout.write(`made a new CA in ${ca.made}; its root key (${join(ca.made, CA_FILES.rootKey)}) never entered the cluster: keep it offline\n`);
      let ready = true;
      if (!flag(ctx, 'no-wait')) ready = await waitReady(ctx, client, timeoutMs);
      ctx.stdout.write(
        [
          'Next (the control plane publishes the trust bundle, ConfigMap trellis-ca-root-cert, in every namespace itself):',
          '  1. Turn injection on and restart the workloads:',
          '     kubectl label namespace NS trellis-injection=enabled && kubectl -n NS rollout restart deploy',
          `  2. Policies: kubectl apply -f POLICY.yaml (checked by the policy webhook, as trellis validate does; kubectl get ap shows Accepted)`,
          `  Remove it all with: trellis uninstall`,
          '',
        ].join('\n'),
      );
      return ready ? 0 : 1;
    },
  },
  {
    name: 'uninstall',
    summary: 'Remove what trellis install created',
    usage: 'trellis uninstall [--kubeconfig FILE] [--purge]',
    description: `Deletes the webhook configurations first (so pod creation never waits on a vanishing
injector), then the control plane, injector, RBAC, Secrets (trellis-ca, trellis-injector-tls),
the injector's and the control plane's Leases and the trellis-system namespace. The
trellis-ca-root-cert ConfigMaps the control plane wrote in each namespace are left (they hold
only public roots).

  --kubeconfig FILE   the cluster (default $KUBECONFIG, else the in-cluster config)
  --purge             also delete the policy CRDs, and with them every PeerAuthentication and
                      AuthorizationPolicy in the cluster (kept by default: they are your data)
  --manifests DIR     the deploy/ folder to read (default: the one beside this CLI)`,
    options: { kubeconfig: { type: 'string' }, context: { type: 'string' }, purge: { type: 'boolean' }, manifests: { type: 'string' } },
    async run(ctx) {
      const deploy = readDeployManifests(resolve(ctx.cwd, optionalString(ctx, 'manifests') ?? DEFAULT_DEPLOY_DIR));
      const client = await connect(ctx);
      const features = detectApiFeatures(await fetchDiscoveryFacts(client));
      const { objects } = installPlan(deploy, { trustDomain: DEFAULT_TRUST_DOMAIN, namespace: NAMESPACE }, features);
      const extra: KubeObject[] = [
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: CA_SECRET_NAME, namespace: NAMESPACE } },
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'trellis-injector-tls', namespace: NAMESPACE } },
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'trellis-injector', namespace: NAMESPACE } },
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'trellis-control-plane', namespace: NAMESPACE } },
      ];
      // Reverse apply order: webhooks first, the namespace last.
      const ordered = [...objects, ...extra].filter((o) => flag(ctx, 'purge') || o.kind !== 'CustomResourceDefinition').reverse();
      const webhooks = ordered.filter((o) => /WebhookConfiguration$/.test(o.kind ?? ''));
      const rest = ordered.filter((o) => !/WebhookConfiguration$/.test(o.kind ?? '') && o.kind !== 'Namespace');
      const ns = ordered.filter((o) => o.kind === 'Namespace');
      const results = [...(await deleteObjects(client, webhooks)), ...(await deleteObjects(client, rest)), ...(await deleteObjects(client, ns))];
      printResults(ctx, results);
      // A purged CRD is Terminating until its objects are gone; wait for it, as kubectl delete does.
      const stuck = await waitGone(client, ordered.filter((o) => o.kind === 'CustomResourceDefinition'), 60_000);
      for (const ref of stuck) ctx.stderr.write(`trellis uninstall: ${ref} is still terminating after 60s (the API server removes its objects first)\n`);
      ctx.stdout.write(`trellis uninstall: ${results.filter((r) => r.result === 'deleted').length} objects deleted${flag(ctx, 'purge') ? '' : '; the policy CRDs and policies are kept (--purge deletes them)'}\n`);
      return 0;
    },
  },
];
