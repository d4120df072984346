/**
 * Runs a sidecar process from a validated SidecarConfig: listeners and admin
 * first (they refuse traffic until ready), then the discovery stream and the
 * IdentityManager, which fill the state. Resolves with the process's exit
 * code when the sidecar has drained after `stopSignal` (SIGTERM/SIGINT) or
 * POST /quitquitquit (0), or after it found no credential left to
 * authenticate with (NO_CREDENTIAL_EXIT_CODE: its supervisor must restart it
 * with a fresh join token).
 */
import { readFile } from 'node:fs/promises';
import { DEFAULT_KEY_EXCHANGE, isLoopbackHost, NO_CREDENTIAL_EXIT_CODE, type KeyExchangePolicy, type Logger } from '@trellis/shared';
import { SidecarError } from './errors';
import { Sidecar } from './sidecar';
import { startHealthServer } from './admin/health-server';
import { IdentityManager } from './identity/identity-manager';
import { sharedAuthorizer } from './policy/authorizer';
import { wireDiscovery, type DiscoverySource } from './control/discovery-wiring';
import { ReportLoop } from './control/report-loop';
import type { SidecarConfig } from './config/sidecar-config';

/** The discovery client as the runner uses it. */
export interface DiscoveryRuntime extends DiscoverySource {
  start(): void;
  /** Closes the stream with a goodbye; resolves when it was answered. */
  stop(): Promise<void> | void;
  /** A new SVID was installed: move the stream to it. */
  credentialsChanged?(): void;
  /** Called when no credential is left to open a stream with. */
  onCredentialsExhausted?(listener: (e: { serverCode: string; message: string }) => void): unknown;
  requestSvid(csrDer: Buffer): Promise<{ chainPem: string }>;
  syncState(): Record<string, unknown>;
  connection(): unknown;
  /** Sends a sidecar report on the open stream (absent: reports are not sent). */
  sendReport?(body: Buffer): boolean;
}

/** What the discovery client is built from. */
export interface DiscoveryRuntimeOptions {
  addresses: string[];
  bootstrapBundlePem: string;
  getToken(): Promise<string>;
  getCredentials(): { keyPem: string; chainPem: string; notAfter: Date } | null;
  node: { spiffeId: string; namespace: string; labels: Record<string, string>; service: string; inboundPorts: number[]; address?: string };
  controlPlaneSpiffeId: string;
  logger: Logger;
  endpointNames?: string[];
  /** The key-exchange policy for the control-plane connection. */
  getKeyExchange?(): KeyExchangePolicy;
}

/** Collaborators of runSidecar. */
export interface RunSidecarDeps {
  logger: Logger;
  stopSignal: AbortSignal;
  createDiscovery(opts: DiscoveryRuntimeOptions): DiscoveryRuntime;
  clock?: () => Date;
}

/** Starts everything and resolves with the exit code after the drain. */
export async function runSidecar(config: SidecarConfig, deps: RunSidecarDeps): Promise<number> {
  const { logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  let bootstrap: string;
  try {
    bootstrap = await readFile(config.caBundleFile, 'utf8');
  } catch (err) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CONFIG', `--ca-bundle ${config.caBundleFile}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: config.caBundleFile });
  }
  if (!bootstrap.includes('-----BEGIN CERTIFICATE-----')) {
    throw new SidecarError('TRELLIS_SIDECAR_BAD_CONFIG', `--ca-bundle ${config.caBundleFile}: no PEM certificate in the file`, { file: config.caBundleFile });
  }

  let quit: () => void = () => undefined;
  const quitRequested = new Promise<void>((resolve) => (quit = resolve));
  let discovery: DiscoveryRuntime | undefined;
  const sidecar: Sidecar = new Sidecar(
    {
      inbound: config.inbound,
      outbound: config.outbound,
      admin: config.admin,
      workload: { namespace: config.namespace, labels: config.labels },
      drainMs: config.drainMs,
      detectTimeoutMs: config.detectTimeoutMs,
      maxPendingHandshakes: config.maxPendingHandshakes,
      dataPath: config.dataPath,
    },
    {
      logger,
      clock,
      authorize: sharedAuthorizer({ trustDomain: (): string => sidecar.state.current().credentials?.trustDomain ?? config.trustDomain }),
      extraDump: () => ({ controlPlane: discovery ? { connection: discovery.connection(), sync: discovery.syncState() } : null }),
      onQuit: () => quit(),
      controlPlaneConnected: () => (discovery ? (discovery.connection() as { connected?: boolean }).connected === true : undefined),
    },
  );
  if (config.admin && !isLoopbackHost(config.admin.host)) {
    logger.warn('the admin endpoint listens beyond localhost (--admin-allow-remote): /config_dump and POST /quitquitquit are reachable from the network', { admin: `${config.admin.host}:${config.admin.port}` });
  }
  await sidecar.start();
  const health = config.health
    ? await startHealthServer(config.health.host, config.health.port, { readiness: () => sidecar.readiness(), probes: config.appProbes }).catch((err: Error) => {
        throw new SidecarError('TRELLIS_SIDECAR_LISTEN_FAILED', `health port ${config.health!.host}:${config.health!.port}: ${err.message}`);
      })
    : undefined;

  discovery = deps.createDiscovery({
    addresses: [...config.controlPlane],
    bootstrapBundlePem: bootstrap,
    // Re-read at every use: the kubelet rotates projected tokens in place.
    getToken: async () => {
      try {
        return (await readFile(config.tokenFile, 'utf8')).trim();
      } catch (err) {
        throw new SidecarError('TRELLIS_SIDECAR_BAD_CONFIG', `--token-file ${config.tokenFile}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: config.tokenFile });
      }
    },
    getCredentials: () => {
      const c = sidecar.state.current().credentials;
      return c ? { keyPem: c.keyPem, chainPem: c.chainPem, notAfter: c.notAfter } : null;
    },
    node: {
      spiffeId: config.spiffeId,
      namespace: config.namespace,
      labels: { ...config.labels },
      service: config.service,
      // Announce the ports that accept mTLS (our listeners): peers can always dial those. In a pod
      // with the iptables redirect, dialing an app port lands on the same listener, and an outbound
      // SERVICE:PORT substitutes that port; without a redirect (trellis up) only the listener is safe.
      // The ports as bound (the listeners are up by now): a listener configured on port 0 announces the one it got.
      inboundPorts: sidecar.inbound.map((l) => l.port),
      address: config.podIp,
    },
    controlPlaneSpiffeId: config.controlPlaneSpiffeId,
    // The control-plane hop follows the pushed key-exchange policy too (prefer until one arrives).
    getKeyExchange: () => sidecar.state.current().peerAuth?.keyExchange ?? DEFAULT_KEY_EXCHANGE,
    logger: logger.child({ component: 'discovery' }),
  });
  let stopping = false;
  wireDiscovery(discovery, sidecar.state, { logger, stopping: () => stopping });
  // Every new SVID moves the discovery stream to one authenticated with it, before the old one's credential runs out.
  sidecar.state.onChange((_snap, changed) => {
    if (changed.includes('credentials')) discovery?.credentialsChanged?.();
  });
  let exitCode = 0;
  discovery.onCredentialsExhausted?.((e) => {
    if (stopping || exitCode !== 0) return;
    exitCode = NO_CREDENTIAL_EXIT_CODE;
    logger.error('no usable credential left: no valid SVID to renew with, and the control plane refused our join token; exiting so that our supervisor restarts us with a fresh token', {
      code: 'TRELLIS_SIDECAR_NO_CREDENTIAL',
      serverCode: e.serverCode,
      exitCode,
      fix: 'restart the sidecar with a new join token (trellis token create); trellis up does this by itself, a Kubernetes token re-attests without a restart',
    });
    quit();
  });
  const identity = new IdentityManager({
    state: sidecar.state,
    issue: (csr) => discovery!.requestSvid(csr),
    logger: logger.child({ component: 'identity' }),
    clock,
    spiffeId: config.spiffeId,
    rotation: config.rotation,
    onRotation: (result) => sidecar.metrics.rotations.inc({ result }),
    // Forced re-issue (trellis ca reissue, root rotation): renew with a fresh key by the pushed deadline.
    renewHints: discovery,
  });
  const sendReport = discovery.sendReport?.bind(discovery);
  const reports = sendReport
    ? new ReportLoop({ sink: { sendReport, onConnectionChange: (l) => discovery!.onConnectionChange(l) }, build: () => sidecar.report(identity.nextRenewalAt()) })
    : undefined;
  reports?.start();
  let wasReady = false;
  const readyWatch = setInterval(() => {
    const r = sidecar.readiness();
    if (r.ready !== wasReady) {
      wasReady = r.ready;
      if (r.ready) logger.info('sidecar ready', { spiffeId: sidecar.state.current().credentials?.spiffeId, admin: config.admin ? `${config.admin.host}:${sidecar.adminBoundPort}` : undefined });
      else logger.error('sidecar NOT READY: refusing traffic', { reason: r.reason });
    }
  }, 250);
  readyWatch.unref();
  discovery.start();
  identity.start().catch((err) => {
    if (!stopping) logger.error('identity manager stopped', { error: err });
  });

  await Promise.race([quitRequested, new Promise<void>((resolve) => (deps.stopSignal.aborted ? resolve() : deps.stopSignal.addEventListener('abort', () => resolve(), { once: true })))]);
  stopping = true;
  logger.info('draining', { drainMs: config.drainMs, open: sidecar.tracker.size });
  clearInterval(readyWatch);
  reports?.stop();
  identity.stop();
  await sidecar.stop(config.drainMs);
  // Last, with a goodbye: the control plane withdraws our endpoints at once (a lost stream keeps them for a grace period).
  await discovery.stop();
  if (health) {
    health.server.closeAllConnections();
    await new Promise<void>((r) => health.server.close(() => r()));
  }
  logger.info('sidecar stopped', { exitCode });
  return exitCode;
}
