/** `trellis sidecar`: the per-pod mTLS proxy (wiring only; behaviour lives in @trellis/sidecar). */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createLogger, UsageError, type LogLevel } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString } from '../flags';

/** The `sidecar` command; the dispatcher discovers it. */
export const commands: Command[] = [
  {
    name: 'sidecar',
    summary: 'Run the mTLS sidecar: SVID rotation, inbound/outbound mTLS, policy enforcement, admin',
    usage:
      'trellis sidecar --control-plane ADDR[,ADDR...] --ca-bundle FILE --token-file FILE --service NAME\n' +
      '                [--namespace NS] [--service-account SA] [--trust-domain TD] [--spiffe-id ID] [--labels k=v,...]\n' +
      '                [--inbound [HOST:]PORT=APP_PORT[/PROTOCOL] ...] [--outbound [HOST:]LOCAL_PORT=SERVICE[:PORT][/http] | =ADDR[/http]#SPIFFE_ID ...]\n' +
      '                [--admin 127.0.0.1:15000] [--drain 5s] [--config FILE]',
    description: `Every flag can also come from an environment variable (TRELLIS_ + the flag name in
upper case with _ for -, e.g. TRELLIS_CONTROL_PLANE, TRELLIS_INBOUND="15006=8080/http,15007=9090")
or from the file given by --config / TRELLIS_CONFIG (YAML; JSON when it ends in .json; camelCase keys: controlPlane, caBundle,
tokenFile, namespace, service, serviceAccount, trustDomain, spiffeId, labels, inbound, outbound,
admin, adminAllowRemote, drain, detectTimeout, maxPendingHandshakes, rotateAt, rotateJitter, logLevel). Flags win over the environment,
which wins over the file.

  --control-plane ADDR,...  control-plane replicas (HOST:PORT), tried in turn with backoff
  --ca-bundle FILE          roots to trust for the control plane until it pushes the bundle
  --token-file FILE         bearer token for first contact; re-read at each use. A join token
                            (trellis token create) names our SPIFFE ID, so with one the
                            identity flags below are not needed
  --namespace NS            our namespace (else TRELLIS_POD_NAMESPACE, else the one in our
                            SPIFFE ID); required when neither names it
  --service NAME            our service name
  --spiffe-id ID            our SPIFFE ID; default: the one the join token names, else
                            spiffe://TD/ns/NS/sa/SA
  --service-account SA      our service account (default: from our SPIFFE ID, else "default")
  --trust-domain TD         default: our SPIFFE ID's, else cluster.local; the control plane is
                            expected as spiffe://TD/ns/trellis-system/sa/trellis-control-plane
                            (--control-plane-id overrides)
  --inbound SPEC            [HOST:]PORT=APP_PORT[/PROTOCOL]; host defaults to 0.0.0.0; no PROTOCOL: TCP;
                            http (the app's HTTP version probed), h2c or grpc (HTTP/2 to the app), http1
  --outbound SPEC           [HOST:]LOCAL_PORT=SERVICE[:PORT][/http] or =ADDR[/http]#SPIFFE_ID; host 127.0.0.1;
                            /http: h2c requests over one pooled HTTP/2 mTLS connection per endpoint
  --admin HOST:PORT         /ready, /stats, /config_dump, POST /quitquitquit; no authentication, so
                            a loopback address (default host 127.0.0.1) unless --admin-allow-remote
  --admin-allow-remote      let --admin listen beyond loopback (a trusted network only); env
                            TRELLIS_ADMIN_ALLOW_REMOTE=true
  --health HOST:PORT        kubelet-facing /ready and /app-health/<container>/<probe>
                            (forwarded to the probes in TRELLIS_APP_PROBES); env TRELLIS_HEALTH_LISTEN
  --drain DURATION          how long SIGTERM waits for open connections (default 5s)
  --detect-timeout DUR      PERMISSIVE: wait for client bytes this long (default 1s)
  --max-pending-handshakes N
                            inbound connections not yet judged, beyond which new ones are
                            closed at once and counted (default 1024)
  --data-path PATH          auto (default: the native relay when built), native, node
  --rotate-at F             renew at this fraction of the lifetime (default 0.5)
  --rotate-jitter F         +/- this fraction of the lifetime (default 0.1)
  --log-level LEVEL         debug, info (default), warn, error`,
    options: {
      config: { type: 'string' },
      'control-plane': { type: 'string', multiple: true },
      'ca-bundle': { type: 'string' },
      'token-file': { type: 'string' },
      namespace: { type: 'string' },
      service: { type: 'string' },
      'service-account': { type: 'string' },
      'trust-domain': { type: 'string' },
      'spiffe-id': { type: 'string' },
      'control-plane-id': { type: 'string' },
      labels: { type: 'string', multiple: true },
      inbound: { type: 'string', multiple: true },
      outbound: { type: 'string', multiple: true },
      admin: { type: 'string' },
      'admin-allow-remote': { type: 'boolean' },
      health: { type: 'string' },
      drain: { type: 'string' },
      'detect-timeout': { type: 'string' },
      'max-pending-handshakes': { type: 'string' },
      'data-path': { type: 'string' },
      'rotate-at': { type: 'string' },
      'rotate-jitter': { type: 'string' },
      'log-level': { type: 'string' },
    },
    async run(ctx) {
      // Loaded here, not at module load: every trellis command's module is
      // loaded at start, and the others need neither gRPC nor the data plane.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { DiscoveryClient, SidecarError, parseSidecarConfig, runSidecar } = require('@trellis/sidecar') as typeof import('@trellis/sidecar');
      const configPath = optionalString(ctx, 'config') ?? (ctx.env.TRELLIS_CONFIG || undefined);
      let file: { path: string; text: string } | undefined;
      if (configPath !== undefined) {
        const path = resolve(ctx.cwd, configPath);
        try {
          file = { path: configPath, text: readFileSync(path, 'utf8') };
        } catch (err) {
          throw new SidecarError('TRELLIS_SIDECAR_BAD_CONFIG', `--config ${configPath}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: configPath });
        }
      }
      let config: ReturnType<typeof parseSidecarConfig>;
      try {
        config = parseSidecarConfig({ flags: ctx.values, env: ctx.env, file, readToken: readTokenFile(ctx.cwd) });
      } catch (err) {
        // Problems only in the flags are a command line that cannot be used: exit 2 with the usage.
        const problems = err instanceof SidecarError ? (err.details.problems as string[] | undefined) : undefined;
        if (problems && problems.length > 0 && problems.every((p) => p.startsWith('--'))) throw new UsageError(err instanceof Error ? err.message : String(err), { problems });
        throw err;
      }
      const abs = (p: string): string => resolve(ctx.cwd, p);
      const logger = createLogger({ component: 'sidecar', sink: ctx.stderr, level: config.logLevel as LogLevel }, { spiffeId: config.spiffeId });
      return runSidecar(
        { ...config, caBundleFile: abs(config.caBundleFile), tokenFile: abs(config.tokenFile) },
        { logger, stopSignal: ctx.stopSignal, createDiscovery: (o) => new DiscoveryClient(o) },
      );
    },
  },
];

/** Reads a token file for the identity it names; an unreadable file is reported later, at first use. */
function readTokenFile(cwd: string): (path: string) => string | undefined {
  return (path) => {
    try {
      return readFileSync(resolve(cwd, path), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
}
