/** `trellis injector`: the mutating admission webhook server, and its caBundle. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { join } from 'node:path';
import { UsageError, createLogger, injectorSpiffeId, parseHostPort, parseDuration, parseDurationSeconds } from '@trellis/shared';
import { KubeClient, detectApiFeatures, fetchDiscoveryFacts } from '@trellis/kubernetes';
import { CA_FILES, loadCertificateAuthority } from '@trellis/control-plane';
import { FileCertSource, InjectorError, IssuedCertSource, startSelfManagedTls, startWebhookServer, type CertSource } from '@trellis/injector-webhook';
import type { Command, CommandContext } from '../command';
import { optionalString, stringList } from '../flags';
import { loadInjectorConfig } from './inject';

/** Splits `HOST:PORT` (IPv6 in brackets); a usage error naming `flagName` otherwise. */
export function parseListen(value: string, flagName: string): { host: string; port: number } {
  const hp = parseHostPort(value);
  if (typeof hp === 'string') throw new UsageError(`--${flagName} must be HOST:PORT, got "${value}" (${hp})`, { flag: flagName });
  return hp;
}

/** The DNS names the API server dials for the webhook Service (and checks). */
const SERVICE_DNS_NAMES = ['trellis-injector.trellis-system.svc', 'trellis-injector.trellis-system.svc.cluster.local'];

async function certSource(ctx: CommandContext, logger: ReturnType<typeof createLogger>): Promise<{ certs: CertSource; stop(): Promise<void>; client?: KubeClient }> {
  const cert = optionalString(ctx, 'cert');
  const key = optionalString(ctx, 'key');
  const caDir = optionalString(ctx, 'ca-dir');
  const secret = optionalString(ctx, 'cert-secret');
  if ([caDir, cert ?? key, secret].filter((v) => v !== undefined).length > 1) throw new UsageError('give one of --cert-secret, --ca-dir or --cert/--key', { flag: secret !== undefined ? 'cert-secret' : 'ca-dir' });
  if (secret !== undefined) {
    // On a cluster: the certificate lives in a Secret shared by the replicas, and the Lease leader writes the caBundle.
    const given = stringList(ctx, 'dns-name');
    const namespace = optionalString(ctx, 'namespace') ?? ctx.env.POD_NAMESPACE ?? 'trellis-system';
    const leaseMs = parseDuration(optionalString(ctx, 'lease-duration') ?? '15s', 'lease-duration');
    const kubeconfig = optionalString(ctx, 'kubeconfig');
    const client = await KubeClient.connect(kubeconfig !== undefined ? { kubeconfig: resolve(ctx.cwd, kubeconfig) } : {});
    const tls = await startSelfManagedTls({
      client,
      namespace,
      secretName: secret,
      dnsNames: given.length > 0 ? given : SERVICE_DNS_NAMES,
      ipAddresses: stringList(ctx, 'ip-san'),
      caValidityMs: parseDuration(optionalString(ctx, 'ca-ttl') ?? '3650d', 'ca-ttl'),
      certValidityMs: parseDuration(optionalString(ctx, 'cert-ttl') ?? '90d', 'cert-ttl'),
      refreshMs: parseDuration(optionalString(ctx, 'refresh-interval') ?? '60s', 'refresh-interval'),
      identity: optionalString(ctx, 'identity') ?? (ctx.env.POD_NAME ? `${ctx.env.POD_NAME}` : undefined),
      lease: { leaseDurationMs: leaseMs, renewDeadlineMs: Math.floor((leaseMs * 2) / 3), retryPeriodMs: Math.max(100, Math.floor(leaseMs / 7)) },
      logger,
    });
    return { certs: tls.certs, stop: () => tls.stop(), client };
  }
  if (caDir !== undefined) {
    const ttlSeconds = parseDurationSeconds(optionalString(ctx, 'cert-ttl') ?? '24h', 'cert-ttl');
    const ca = await loadCertificateAuthority(resolve(ctx.cwd, caDir), { logger: logger.child({ component: 'ca' }) });
    const spiffeId = optionalString(ctx, 'spiffe-id') ?? injectorSpiffeId(ca.trustDomain);
    // The API server dials the webhook Service by DNS name and checks it, so the serving certificate carries those names too.
    const given = stringList(ctx, 'dns-name');
    const dnsNames = given.length > 0 ? given : SERVICE_DNS_NAMES;
    const issued = await IssuedCertSource.start({
      issue: async (csr) => ({ chainPem: (await ca.issue({ csr, spiffeId, ttlSeconds, dnsNames, requester: 'trellis-injector' })).chainPem }),
      logger,
    });
    return { certs: issued, stop: async () => issued.close() };
  }
  if (cert === undefined || key === undefined) throw new UsageError('--cert and --key are required (the serving certificate and key files), or --cert-secret NAME on a cluster', { flag: cert === undefined ? 'cert' : 'key' });
  const interval = Number(ctx.env.TRELLIS_INJECTOR_RELOAD_MS ?? 2000);
  const files = new FileCertSource({ certFile: resolve(ctx.cwd, cert), keyFile: resolve(ctx.cwd, key), intervalMs: Number.isFinite(interval) && interval > 0 ? interval : 2000, logger });
  return { certs: files, stop: async () => files.close() };
}

/** The commands this module adds to `trellis`. */
export const commands: Command[] = [
  {
    name: 'injector',
    summary: 'Run the sidecar-injection admission webhook (HTTPS, POST /inject)',
    usage: 'trellis injector [--listen HOST:PORT] (--cert-secret NAME [--kubeconfig FILE] | --cert FILE --key FILE | --ca-dir DIR [--cert-ttl 24h] [--spiffe-id ID] [--dns-name NAME]...) [--config FILE] [--log-level LEVEL]',
    description: `Serves AdmissionReview v1 on https://HOST:PORT/inject (sidecar injection) and
https://HOST:PORT/validate (policy validation), and GET /healthz.
The serving certificate is re-read when --cert/--key change (no restart).

On a cluster (what deploy/ runs):
  --cert-secret NAME   get or make the serving certificate (and a small webhook CA) in this Secret,
                       shared by the replicas (optimistic concurrency: they agree on one), renew it
                       at 2/3 of its lifetime, and let the leader of a Lease write the CA bundle into
                       the webhook configurations' caBundle
  --namespace NS       the Secret's and Lease's namespace (default $POD_NAMESPACE, else trellis-system)
  --kubeconfig FILE    how to reach the API server (default: the pod's in-cluster config)
  --cert-ttl 90d, --ca-ttl 3650d, --refresh-interval 60s, --lease-duration 15s
  --ip-san IP          an IP SAN for the serving certificate, repeatable (a webhook registered by url)
  --identity ID        this replica in the Lease (default $POD_NAME)

  --listen HOST:PORT   default 0.0.0.0:15017
  --cert, --key FILE   serving certificate chain and key (PEM)
  --ca-dir DIR         issue the serving certificate from a Trellis CA directory (key kept in
                       memory only) and renew it at half its lifetime
  --cert-ttl DURATION  lifetime of that certificate (default 24h)
  --spiffe-id ID       its identity (default spiffe://<td>/ns/trellis-system/sa/trellis-injector)
  --dns-name NAME      a DNS SAN for it, repeatable (default trellis-injector.trellis-system.svc
                       and trellis-injector.trellis-system.svc.cluster.local: the names the API
                       server dials and checks)
  --config FILE        injector settings (YAML; see docs/kubernetes.md)
  --log-level LEVEL    debug|info|warn|error (default info)`,
    options: {
      listen: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'ca-dir': { type: 'string' },
      'cert-ttl': { type: 'string' },
      'spiffe-id': { type: 'string' },
      'dns-name': { type: 'string', multiple: true },
      'cert-secret': { type: 'string' },
      namespace: { type: 'string' },
      kubeconfig: { type: 'string' },
      'ca-ttl': { type: 'string' },
      'refresh-interval': { type: 'string' },
      'lease-duration': { type: 'string' },
      'ip-san': { type: 'string', multiple: true },
      identity: { type: 'string' },
      config: { type: 'string' },
      'log-level': { type: 'string' },
    },
    async run(ctx) {
      const { host, port } = parseListen(optionalString(ctx, 'listen') ?? '0.0.0.0:15017', 'listen');
      const level = optionalString(ctx, 'log-level') ?? 'info';
      if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new UsageError(`--log-level must be debug, info, warn or error, got "${level}"`, { flag: 'log-level' });
      const logger = createLogger({ component: 'injector', sink: ctx.stderr, level: level as 'info' });
      let config = loadInjectorConfig(ctx);
      const { certs, stop: stopCerts, client } = await certSource(ctx, logger);
      if (client && config.nativeSidecar) {
        // Native sidecars (init containers with restartPolicy: Always) need Kubernetes 1.29+; an older API
        // server refuses such pods, so the injector falls back to a classic sidecar there (docs/kubernetes.md).
        const features = detectApiFeatures(await fetchDiscoveryFacts(client));
        if (!features.nativeSidecars) {
          logger.warn('native sidecars need Kubernetes 1.29+; injecting classic sidecars', { serverVersion: features.serverVersion.gitVersion });
          config = Object.freeze({ ...config, nativeSidecar: false });
        }
      }
      const server = await startWebhookServer(host, port, { config, certs, logger });
      const addr = server.address();
      ctx.stdout.write(`injector listening on https://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}/inject\n`);
      await new Promise<void>((done) => {
        if (ctx.stopSignal.aborted) done();
        else ctx.stopSignal.addEventListener('abort', () => done(), { once: true });
      });
      await stopCerts();
      await server.close();
    },
  },
  {
    name: 'injector ca-bundle',
    summary: 'Print the base64 caBundle for the MutatingWebhookConfiguration',
    usage: 'trellis injector ca-bundle (--ca-file FILE | --ca-dir DIR)',
    description: `Prints the PEM trust bundle that verifies the injector's serving certificate,
base64-encoded on one line, as clientConfig.caBundle expects.

  --ca-file FILE   a PEM file with the CA certificate(s)
  --ca-dir DIR     a Trellis CA directory (its root.pem)`,
    options: { 'ca-file': { type: 'string' }, 'ca-dir': { type: 'string' } },
    async run(ctx) {
      const caDir = optionalString(ctx, 'ca-dir');
      const given = optionalString(ctx, 'ca-file');
      if ((caDir === undefined) === (given === undefined)) throw new UsageError('give exactly one of --ca-file or --ca-dir', { flag: 'ca-file' });
      const file = given ?? join(caDir!, CA_FILES.rootCert);
      let pem: string;
      try {
        pem = readFileSync(resolve(ctx.cwd, file), 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { flag: given ? 'ca-file' : 'ca-dir' });
      }
      if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new InjectorError('TRELLIS_INJECTOR_BAD_CERT', `${file}: no PEM certificate found`, { file });
      ctx.stdout.write(Buffer.from(pem, 'utf8').toString('base64') + '\n');
    },
  },
];
