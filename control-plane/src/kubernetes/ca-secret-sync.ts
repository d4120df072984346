/**
 * The CA material and rotation state shared by every replica on
 * Kubernetes: Secret `trellis-ca` (what `trellis install` creates, and what
 * each pod copies into its own CA dir at start) is the source of truth, and
 * each replica mirrors it into its CA dir. A lifecycle step (the Lease
 * holder's timer, or an admin API call on any replica) runs on the local
 * CA dir as in local mode, then its result is committed to the Secret with
 * an update guarded by the resourceVersion the dir was synced at: the
 * commit is the step. If another replica committed first (409), the local
 * change is undone from the Secret and the step refused
 * (ROTATION_CONFLICT); it is decided again from the newer state. So a new
 * leader resumes exactly at the last committed phase: a step the old
 * leader died in before committing is done once by the new one, and one it
 * committed is never done again. Every other replica applies each new
 * version of the Secret to its CA dir (a watch on that one object), and the
 * reloading CA picks up the files.
 *
 * Mirrored: root.pem, the intermediate (cert, key, chain), the next and
 * previous intermediate slots, root-rotation.json and the join-token key.
 * Never root.key, the audit log or anything else. A CA dir whose key is in
 * an HSM (signer.yaml) is not mirrored (each replica has its own token).
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { collectionPath, KubernetesError, KubernetesErrorCode, startInformer, type KubeClient, type KubeObject, type ResourceInformer } from '@trellis/kubernetes';
import type { Logger } from '@trellis/shared';
import { CA_FILES } from '../ca/ca-dir';
import { SIGNER_CONFIG_FILE } from '../hsm/signer-config';
import { LifecycleError, LifecycleErrorCode } from '../lifecycle/lifecycle-error';
import { ROOT_ROTATION_FILE } from '../lifecycle/root-rotation-store';
import { writeFileAtomic } from '../state/atomic-file';

/** The Secret holding the CA. */
export const CA_SECRET = 'trellis-ca';

/** Secret key ↔ path in the CA dir (Secret keys cannot hold `/`), with the file's mode. */
export const MIRRORED_CA_FILES: ReadonlyArray<{ key: string; path: string; mode: number }> = Object.freeze([
  { key: CA_FILES.rootCert, path: CA_FILES.rootCert, mode: 0o644 },
  { key: CA_FILES.intermediateCert, path: CA_FILES.intermediateCert, mode: 0o644 },
  { key: CA_FILES.intermediateKey, path: CA_FILES.intermediateKey, mode: 0o600 },
  { key: CA_FILES.chain, path: CA_FILES.chain, mode: 0o644 },
  { key: ROOT_ROTATION_FILE, path: ROOT_ROTATION_FILE, mode: 0o644 },
  ...['next', 'previous'].flatMap((slot) =>
    [CA_FILES.intermediateCert, CA_FILES.intermediateKey, CA_FILES.intermediateCsr, CA_FILES.chain].map((f) => ({ key: `${slot}.${f}`, path: join(slot, f), mode: f.endsWith('.key') ? 0o600 : 0o644 })),
  ),
  { key: 'join-tokens.hmac.key', path: join('join-tokens', 'hmac.key'), mode: 0o600 },
]);

const REQUIRED = [CA_FILES.rootCert, CA_FILES.intermediateCert, CA_FILES.chain];

interface Secret extends KubeObject {
  data?: Record<string, string>;
}

/** The mirrored files of `caDir`, base64 by Secret key. */
export function readMirroredFiles(caDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of MIRRORED_CA_FILES) {
    try {
      out[f.key] = readFileSync(join(caDir, f.path)).toString('base64');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

function sameFiles(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

/** Writes what differs between the Secret's mirrored keys and `caDir` (atomically per file); returns the paths changed. */
export function applyMirroredFiles(caDir: string, data: Record<string, string>): string[] {
  const have = readMirroredFiles(caDir);
  const changed: string[] = [];
  for (const f of MIRRORED_CA_FILES) {
    if (data[f.key] === have[f.key]) continue;
    const path = join(caDir, f.path);
    if (data[f.key] === undefined) {
      rmSync(path, { force: true });
      try {
        rmdirSync(dirname(path)); // an emptied slot dir goes too, as activation leaves it
      } catch {
        // not empty, or the CA dir itself
      }
    } else {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileAtomic(path, Buffer.from(data[f.key]!, 'base64'), f.mode);
    }
    changed.push(f.path);
  }
  return changed;
}

/** The CA dir mirrored from, and committed to, Secret trellis-ca. */
export class CaSecretSync {
  private informer: ResourceInformer<Secret> | null = null;
  private secret: Secret | null = null;
  private active = false;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly opts: { namespace: string; caDir: string; name?: string },
    private readonly deps: { client: KubeClient; logger: Logger; onApplied?(paths: readonly string[]): void },
  ) {}

  private path(): string {
    return `${collectionPath('v1', 'Secret', this.opts.namespace)}/${encodeURIComponent(this.opts.name ?? CA_SECRET)}`;
  }

  /** True when lifecycle steps are committed to the Secret (it exists and we may write it). */
  isActive(): boolean {
    return this.active;
  }

  /**
   * Reads the Secret and brings the CA dir to it (the Secret wins), then
   * watches it. Without the Secret (or the right to read it), steps stay
   * local to this replica, which is logged.
   */
  async start(): Promise<void> {
    const where = `Secret ${this.opts.namespace}/${this.opts.name ?? CA_SECRET}`;
    if (existsSync(join(this.opts.caDir, SIGNER_CONFIG_FILE))) {
      this.deps.logger.warn(`the CA key is in an HSM (signer.yaml): CA lifecycle steps are not mirrored through ${where}; each replica's CA dir is its own`, {});
      return;
    }
    let secret: Secret | null;
    try {
      secret = await this.deps.client.getOrNull<Secret>(this.path());
    } catch (err) {
      this.deps.logger.error(`${where} cannot be read: CA lifecycle steps are not shared between replicas (grant get, list, watch, update on it; deploy/rbac.yaml)`, { error: err });
      return;
    }
    if (!secret) {
      this.deps.logger.warn(`no ${where}: CA lifecycle steps (intermediate and root rotation) are not shared between replicas; create it with trellis install`, {});
      return;
    }
    await this.adopt(secret);
    this.active = true;
    this.informer = startInformer<Secret>(this.deps.client, collectionPath('v1', 'Secret', this.opts.namespace), { fieldSelector: `metadata.name=${this.opts.name ?? CA_SECRET}`, logger: this.deps.logger });
    const onChange = (s: Secret): void => {
      this.chain = this.chain.then(() => this.adopt(s)).catch((err) => this.deps.logger.error('CA dir not updated from the Secret; trying again on its next change', { error: err }));
    };
    this.informer.on('add', onChange);
    this.informer.on('update', onChange);
  }

  /**
   * Runs a lifecycle step on the CA dir and commits what it changed to the
   * Secret, one step at a time in this process. A conflict (another replica
   * committed first) or a failed write undoes the local change from the
   * Secret and rejects: ROTATION_CONFLICT, or the API error.
   */
  step<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (!this.active) return fn();
      const before = readMirroredFiles(this.opts.caDir);
      const result = await fn();
      const after = readMirroredFiles(this.opts.caDir);
      if (sameFiles(before, after)) return result;
      const base = this.secret!;
      const kept = Object.fromEntries(Object.entries(base.data ?? {}).filter(([k]) => !MIRRORED_CA_FILES.some((f) => f.key === k)));
      try {
        const written = await this.deps.client.replace<Secret>(this.path(), { ...base, data: { ...kept, ...after } });
        this.secret = written;
        this.deps.logger.info('CA lifecycle step committed to the Secret', { secret: this.opts.name ?? CA_SECRET, resourceVersion: written.metadata?.resourceVersion });
        return result;
      } catch (err) {
        const conflict = err instanceof KubernetesError && err.code === KubernetesErrorCode.CONFLICT;
        // Undo: the CA dir goes back to what the Secret says (the newer version on a conflict).
        try {
          const latest = conflict ? await this.deps.client.getOrNull<Secret>(this.path()) : null;
          if (latest) this.secret = latest;
          applyMirroredFiles(this.opts.caDir, this.secret?.data ?? {});
        } catch (undoErr) {
          this.deps.logger.error('CA dir could not be put back to the Secret after a failed commit', { error: undoErr });
        }
        if (conflict) throw new LifecycleError(LifecycleErrorCode.ROTATION_CONFLICT, 'another replica changed the CA (Secret trellis-ca) at the same time: this step was undone and is decided again from the newer state', {}, { cause: err });
        throw err;
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    await this.informer?.stop();
  }

  /** Brings the CA dir to `secret` when it is a version we do not hold yet. */
  private async adopt(secret: Secret): Promise<void> {
    const rv = secret.metadata?.resourceVersion;
    if (this.secret && rv === this.secret.metadata?.resourceVersion) return;
    if (this.secret && rv && /^\d+$/.test(rv) && /^\d+$/.test(this.secret.metadata?.resourceVersion ?? '') && BigInt(rv) < BigInt(this.secret.metadata!.resourceVersion!)) return;
    const data = secret.data ?? {};
    const missing = REQUIRED.filter((k) => data[k] === undefined);
    if (missing.length > 0) {
      this.deps.logger.error(`Secret ${this.opts.name ?? CA_SECRET} lacks ${missing.join(', ')}: not applied to the CA dir (it would remove the CA)`, {});
      return;
    }
    this.secret = secret;
    const changed = applyMirroredFiles(this.opts.caDir, data);
    if (changed.length > 0) {
      this.deps.logger.info('CA dir brought to the Secret (a lifecycle step committed by a replica)', { secret: this.opts.name ?? CA_SECRET, resourceVersion: rv, files: changed });
      this.deps.onApplied?.(changed);
    }
  }
}
