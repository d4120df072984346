/**
 * Join-token uses on the API server: one ConfigMap per use,
 * `trellis-join-token-use-<jti>-<n>` in the control plane's namespace,
 * created and never updated. The create is the claim: the API server
 * refuses a second create of the same name (409 AlreadyExists), atomically
 * across replicas, so a use taken on one replica is taken on all. A use
 * whose SVID was never handed out is given back by deleting its object.
 * The replica holding the Lease deletes the records of expired tokens (the
 * `trellis.dev/expires-at` annotation) every few minutes.
 */
import { randomBytes } from 'node:crypto';
import { collectionPath, KubernetesError, KubernetesErrorCode, type KubeClient, type KubeList, type KubeObject } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import type { TokenUses } from '../auth/token-uses';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';

/** The label every use record carries (what the sweep lists by). */
export const TOKEN_USE_LABEL = 'trellis.dev/join-token-use';
const EXPIRES_ANNOTATION = 'trellis.dev/expires-at';

/** The object name of use `n` of token `tokenId` (a UUID: lower-case hex and dashes, so a valid name). */
export function tokenUseName(tokenId: string, n: number): string {
  return `trellis-join-token-use-${tokenId}-${n}`;
}

/** Token uses as create-only ConfigMaps. */
export class KubeTokenUses implements TokenUses {
  private sweeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: { namespace: string; sweepEveryMs?: number },
    private readonly deps: { client: KubeClient; logger: Logger; isLeader(): boolean; nowMs?: () => number },
  ) {}

  private collection(): string {
    return collectionPath('v1', 'ConfigMap', this.opts.namespace);
  }

  async consume(tokenId: string, uses: number, expiresAtMs: number): Promise<number> {
    const now = (this.deps.nowMs ?? Date.now)();
    for (let n = 1; n <= uses; n++) {
      const name = tokenUseName(tokenId, n);
      try {
        await this.deps.client.create(this.collection(), {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name,
            namespace: this.opts.namespace,
            labels: { 'app.kubernetes.io/part-of': 'trellis', [TOKEN_USE_LABEL]: 'true' },
            annotations: { [EXPIRES_ANNOTATION]: new Date(expiresAtMs).toISOString() },
          },
          data: { tokenId, use: String(n), usedAt: new Date(now).toISOString() },
        });
        return n;
      } catch (err) {
        if (err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT) continue; // taken, on this replica or another
        throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `join token use ${name} could not be recorded on the API server: ${(err as Error).message}`, { object: name, reason: (err as { code?: string }).code ?? 'error' }, { cause: err });
      }
    }
    throw new ControlPlaneError(ControlPlaneErrorCode.TOKEN_SPENT, `join token ${tokenId} already used ${uses} time(s)`, { tokenId });
  }

  async release(tokenId: string, use: number): Promise<void> {
    const name = tokenUseName(tokenId, use);
    try {
      await this.deps.client.delete(`${this.collection()}/${encodeURIComponent(name)}`);
    } catch (err) {
      throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `join token use ${name} could not be given back: ${(err as Error).message}`, { object: name }, { cause: err });
    }
  }

  /**
   * Creates and deletes a probe record (`trellis-join-token-use-probe-<hex>`,
   * labelled like a use and already expired, so a probe whose delete failed
   * is swept): the same create a join needs, with the same RBAC, quota and
   * admission, taking no use of any token.
   */
  async probe(): Promise<void> {
    const name = `trellis-join-token-use-probe-${randomBytes(6).toString('hex')}`;
    const now = new Date((this.deps.nowMs ?? Date.now)()).toISOString();
    try {
      await this.deps.client.create(this.collection(), {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name, namespace: this.opts.namespace, labels: { 'app.kubernetes.io/part-of': 'trellis', [TOKEN_USE_LABEL]: 'true' }, annotations: { [EXPIRES_ANNOTATION]: now } },
        data: { probe: 'true' },
      });
    } catch (err) {
      throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `join token uses cannot be recorded on the API server (probe ${name}): ${(err as Error).message}`, { object: name, reason: (err as { code?: string }).code ?? 'error' }, { cause: err });
    }
    try {
      await this.deps.client.delete(`${this.collection()}/${encodeURIComponent(name)}`);
    } catch (err) {
      this.deps.logger.warn('join-token use probe record not deleted; the leader sweeps it', { object: name, error: err });
    }
  }

  /** Starts sweeping expired records (on the leader only). */
  start(): void {
    this.sweeper = setInterval(() => void this.sweep(), this.opts.sweepEveryMs ?? 300_000);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  /** Deletes the records of tokens that have expired; returns how many. */
  async sweep(): Promise<number> {
    if (!this.deps.isLeader()) return 0;
    const now = (this.deps.nowMs ?? Date.now)();
    let deleted = 0;
    try {
      const list = await this.deps.client.request<KubeList<KubeObject>>('GET', this.collection(), { query: { labelSelector: `${TOKEN_USE_LABEL}=true` } });
      for (const o of list.items) {
        const exp = Date.parse(String(o.metadata?.annotations?.[EXPIRES_ANNOTATION] ?? ''));
        if (!Number.isFinite(exp) || exp > now || !o.metadata?.name) continue;
        if (await this.deps.client.delete(`${this.collection()}/${encodeURIComponent(o.metadata.name)}`)) deleted++;
      }
    } catch (err) {
      this.deps.logger.warn('expired join-token use records not swept; trying again later', { error: err });
    }
    if (deleted > 0) this.deps.logger.info('expired join-token use records deleted', { deleted });
    return deleted;
  }
}
