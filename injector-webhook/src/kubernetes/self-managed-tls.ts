/**
 * The injector's TLS on a cluster, with nothing made by hand: the serving
 * certificate comes from the shared Secret (secret-cert-source.ts, renewed
 * before expiry by whichever replica sees it due), and the leader among the
 * injector replicas (a coordination.k8s.io/v1 Lease) writes the CA bundle
 * into the webhook configurations. Every `refreshMs` each replica re-reads
 * the Secret (so all serve the same pair within a round) and the leader
 * re-publishes.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '@trellis/shared';
import { LeaderElector, type KubeClient } from '@trellis/kubernetes';
import { DEFAULT_WEBHOOK_CONFIGS, publishCaBundle, type WebhookConfigRef } from './ca-bundle-publisher';
import { SecretCertSource } from './secret-cert-source';

/** Settings. */
export interface SelfManagedTlsOptions {
  client: KubeClient;
  namespace: string;
  secretName: string;
  dnsNames: readonly string[];
  ipAddresses?: readonly string[];
  webhookConfigs?: readonly WebhookConfigRef[];
  /** The Lease the replicas elect a publisher with (default trellis-injector). */
  leaseName?: string;
  /** This replica (default: hostname + random suffix). */
  identity?: string;
  caValidityMs?: number;
  certValidityMs?: number;
  /** How often the Secret is re-read and the caBundle checked (default 60 s). */
  refreshMs?: number;
  lease?: { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  logger: Logger;
}

/** Running self-managed TLS. */
export interface SelfManagedTls {
  readonly certs: SecretCertSource;
  readonly elector: LeaderElector;
  stop(): Promise<void>;
}

/** Gets or makes the serving pair, then keeps it and the caBundle current until stopped. */
export async function startSelfManagedTls(opts: SelfManagedTlsOptions): Promise<SelfManagedTls> {
  const log = opts.logger;
  const certs = await SecretCertSource.start({
    client: opts.client,
    namespace: opts.namespace,
    secretName: opts.secretName,
    dnsNames: opts.dnsNames,
    ipAddresses: opts.ipAddresses,
    caValidityMs: opts.caValidityMs,
    certValidityMs: opts.certValidityMs,
    logger: log,
  });
  const configs = opts.webhookConfigs ?? DEFAULT_WEBHOOK_CONFIGS;
  let publishing: Promise<unknown> = Promise.resolve();
  const publish = (): void => {
    publishing = publishing.then(() => publishCaBundle(opts.client, configs, certs.caBundlePem(), log)).catch((err: unknown) => log.warn('caBundle publish failed', { error: err }));
  };
  const elector = new LeaderElector(
    { namespace: opts.namespace, name: opts.leaseName ?? 'trellis-injector', identity: opts.identity ?? `${hostname()}-${randomBytes(4).toString('hex')}`, ...opts.lease },
    { client: opts.client, logger: log, onStartedLeading: publish },
  );
  elector.start();
  let stopped = false;
  let round: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    round = round.then(async () => {
      if (stopped) return;
      try {
        await certs.sync();
      } catch (err) {
        log.warn('serving certificate not refreshed; serving the current one', { error: err });
      }
      if (elector.isLeader()) publish();
    });
  }, opts.refreshMs ?? 60_000);
  timer.unref();
  return {
    certs,
    elector,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
      await publishing;
      await elector.stop();
      certs.close();
    },
  };
}
