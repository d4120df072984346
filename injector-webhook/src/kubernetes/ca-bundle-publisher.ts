/**
 * Keeps `clientConfig.caBundle` of the injector's webhook configurations
 * (MutatingWebhookConfiguration trellis-sidecar-injector,
 * ValidatingWebhookConfiguration trellis-policy-validator) equal to the
 * webhook CA bundle. Only the leader of the injector replicas publishes (a
 * Lease decides), so replicas never fight over it; it publishes on becoming
 * leader and every round after, which also restores a caBundle someone
 * wiped. `deploy/` leaves caBundle out, so re-applying it never clears it.
 * Updates are guarded by the resourceVersion read; a 409 waits for the next
 * round.
 */
import type { Logger } from '@trellis/shared';
import { KubernetesError, KubernetesErrorCode, type KubeClient, type KubeObject } from '@trellis/kubernetes';

/** A webhook configuration to keep current. */
export interface WebhookConfigRef {
  kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration';
  name: string;
}

/** The configurations `deploy/` installs. */
export const DEFAULT_WEBHOOK_CONFIGS: readonly WebhookConfigRef[] = Object.freeze([
  { kind: 'MutatingWebhookConfiguration', name: 'trellis-sidecar-injector' },
  { kind: 'ValidatingWebhookConfiguration', name: 'trellis-policy-validator' },
]);

type WebhookConfig = KubeObject & { webhooks?: Array<{ name?: string; clientConfig?: { caBundle?: string; [k: string]: unknown }; [k: string]: unknown }> };

/** The configuration with every webhook's caBundle set to `bundleB64`, or null when it already is. Pure. */
export function withCaBundle(config: WebhookConfig, bundleB64: string): WebhookConfig | null {
  const hooks = config.webhooks ?? [];
  if (hooks.every((w) => w.clientConfig?.caBundle === bundleB64)) return null;
  return { ...config, webhooks: hooks.map((w) => ({ ...w, clientConfig: { ...(w.clientConfig ?? {}), caBundle: bundleB64 } })) };
}

function path(ref: WebhookConfigRef): string {
  const plural = ref.kind === 'MutatingWebhookConfiguration' ? 'mutatingwebhookconfigurations' : 'validatingwebhookconfigurations';
  return `/apis/admissionregistration.k8s.io/v1/${plural}/${encodeURIComponent(ref.name)}`;
}

/** Writes the bundle into each configuration that lacks it; resolves to how many it updated. */
export async function publishCaBundle(client: KubeClient, configs: readonly WebhookConfigRef[], bundlePem: string, logger: Logger): Promise<number> {
  const bundleB64 = Buffer.from(bundlePem, 'utf8').toString('base64');
  let updated = 0;
  for (const ref of configs) {
    try {
      const current = await client.getOrNull<WebhookConfig>(path(ref));
      if (!current) {
        logger.warn('webhook configuration not found; caBundle not published', { kind: ref.kind, name: ref.name });
        continue;
      }
      const next = withCaBundle(current, bundleB64);
      if (!next) continue;
      await client.replace(path(ref), next);
      updated++;
      logger.info('webhook caBundle published', { kind: ref.kind, name: ref.name, webhooks: (next.webhooks ?? []).length });
    } catch (err) {
      if (err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT) continue; // changed meanwhile: next round
      logger.warn('webhook caBundle not published', { kind: ref.kind, name: ref.name, error: err });
    }
  }
  return updated;
}
