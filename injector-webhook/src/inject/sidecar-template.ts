/**
 * The containers and volumes injection adds, built from the config and the pod.
 *
 * The sidecar gets the `trellis sidecar` flags (issue 5) as args, so what it
 * runs is visible in `kubectl get pod -o yaml`; pod identity comes from the
 * downward API (env and a podinfo volume). Only the sidecar mounts the
 * projected token; only the init container has NET_ADMIN/NET_RAW.
 */
import type { InjectorConfig } from '../config/injector-config';
import type { Upstream } from './annotations';
import type { InboundPort } from './port-plan';
import type { AppProbe } from './probe-rewrite';

/** Name of the sidecar container. */
export const SIDECAR_CONTAINER_NAME = 'trellis-sidecar';
/** Name of the init container that installs the redirect rules. */
export const INIT_CONTAINER_NAME = 'trellis-init';
/** Projected ServiceAccount token volume (sidecar only). */
export const TOKEN_VOLUME = 'trellis-token';
/** Volume holding the trust bundle ConfigMap. */
export const CA_VOLUME = 'trellis-ca';
/** Downward-API volume with the pod's labels and annotations. */
export const PODINFO_VOLUME = 'trellis-podinfo';
/** Where the sidecar mounts the token. */
export const TOKEN_DIR = '/var/run/secrets/trellis/tokens';
/** Where the sidecar mounts the trust bundle. */
export const CA_DIR = '/var/run/secrets/trellis/ca';
/** Where the sidecar mounts the podinfo files. */
export const PODINFO_DIR = '/etc/trellis/podinfo';

/** What the sidecar needs to know about this pod. */
export interface SidecarInputs {
  service: string;
  labels: Record<string, string>;
  inbound: readonly InboundPort[];
  upstreams: readonly Upstream[];
  probes: Record<string, AppProbe>;
}

/** The `trellis sidecar` argument list. The namespace comes from the downward API through `$(TRELLIS_POD_NAMESPACE)`. */
export function sidecarArgs(config: InjectorConfig, inputs: SidecarInputs): string[] {
  const args = [
    'sidecar',
    '--control-plane', config.controlPlane,
    '--ca-bundle', `${CA_DIR}/${config.caBundleKey}`,
    '--token-file', `${TOKEN_DIR}/token`,
    '--namespace', '$(TRELLIS_POD_NAMESPACE)',
    '--service', inputs.service,
  ];
  const labels = Object.keys(inputs.labels).sort().map((k) => `${k}=${inputs.labels[k]}`);
  if (labels.length > 0) args.push('--labels', labels.join(','));
  for (const p of inputs.inbound) args.push('--inbound', `${p.listenPort}=${p.appPort}${p.protocol === 'tcp' ? '' : `/${p.protocol}`}`);
  for (const u of inputs.upstreams) args.push('--outbound', `127.0.0.1:${u.localPort}=${u.service}:${u.port}`);
  args.push('--admin', `127.0.0.1:${config.adminPort}`);
  return args;
}

/** The sidecar container (native mode adds `restartPolicy: Always` and a startup probe). */
export function sidecarContainer(config: InjectorConfig, inputs: SidecarInputs): Record<string, unknown> {
  const env: unknown[] = [
    fieldEnv('TRELLIS_POD_NAME', 'metadata.name'),
    fieldEnv('TRELLIS_POD_NAMESPACE', 'metadata.namespace'),
    fieldEnv('TRELLIS_POD_IP', 'status.podIP'),
    fieldEnv('TRELLIS_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    fieldEnv('TRELLIS_NODE_NAME', 'spec.nodeName'),
    { name: 'TRELLIS_TRUST_DOMAIN', value: config.trustDomain },
    { name: 'TRELLIS_HEALTH_LISTEN', value: `0.0.0.0:${config.healthPort}` },
  ];
  if (Object.keys(inputs.probes).length > 0) env.push({ name: 'TRELLIS_APP_PROBES', value: JSON.stringify(inputs.probes) });
  const ready = { httpGet: { path: '/ready', port: config.healthPort, scheme: 'HTTP' } };
  const c: Record<string, unknown> = {
    name: SIDECAR_CONTAINER_NAME,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: ['trellis'],
    args: sidecarArgs(config, inputs),
    env,
    ports: [{ name: 'trellis-health', containerPort: config.healthPort, protocol: 'TCP' }],
    readinessProbe: { ...ready, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 30 },
    resources: { requests: { ...config.resources.requests }, limits: { ...config.resources.limits } },
    securityContext: {
      runAsUser: config.proxyUid,
      runAsGroup: config.proxyUid,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: CA_VOLUME, mountPath: CA_DIR, readOnly: true },
      { name: PODINFO_VOLUME, mountPath: PODINFO_DIR, readOnly: true },
    ],
  };
  if (config.nativeSidecar) {
    c.restartPolicy = 'Always';
    // Kubelet starts the app containers only after this succeeds.
    c.startupProbe = { ...ready, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 600 };
  }
  return c;
}

/** The `trellis redirect apply` args for the init container. */
export function redirectArgs(config: InjectorConfig, inbound: readonly InboundPort[]): string[] {
  return ['redirect', 'apply', '--inbound', inbound.map((p) => `${p.appPort}=${p.listenPort}`).join(','), '--proxy-uid', String(config.proxyUid)];
}

/**
 * The init container. It runs as root because iptables needs effective
 * NET_ADMIN/NET_RAW, which a non-root user does not get from the capability
 * bounding set; everything else is dropped. Its root filesystem stays writable
 * because iptables takes its lock under /run.
 */
export function initContainer(config: InjectorConfig, inbound: readonly InboundPort[]): Record<string, unknown> {
  return {
    name: INIT_CONTAINER_NAME,
    image: config.image,
    imagePullPolicy: config.imagePullPolicy,
    command: ['trellis'],
    args: redirectArgs(config, inbound),
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '200m', memory: '128Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: false,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}

/** The volumes: projected SA token (audience, expiry from config), trust bundle ConfigMap, podinfo. */
export function sidecarVolumes(config: InjectorConfig): Record<string, unknown>[] {
  return [
    {
      name: TOKEN_VOLUME,
      projected: {
        sources: [{ serviceAccountToken: { audience: config.tokenAudience, expirationSeconds: config.tokenExpirationSeconds, path: 'token' } }],
      },
    },
    { name: CA_VOLUME, configMap: { name: config.caBundleConfigMap, items: [{ key: config.caBundleKey, path: config.caBundleKey }] } },
    {
      name: PODINFO_VOLUME,
      downwardAPI: {
        items: [
          { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
        ],
      },
    },
  ];
}

function fieldEnv(name: string, fieldPath: string): Record<string, unknown> {
  return { name, valueFrom: { fieldRef: { fieldPath } } };
}
