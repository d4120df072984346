/**
 * The federated trust domains the running control plane pushes to sidecars:
 * the `federatesWith` config (see federation.ts) and the bundle file of each
 * entry, read into PEM roots keyed by trust domain. Re-read when the config
 * or any bundle file changes; a reload that fails (bad YAML, a missing or
 * damaged bundle) keeps the last good set, as policies do, so a half-written
 * file never drops a partner's roots mid-traffic nor adds a wrong one.
 */
import { readFileSync } from 'node:fs';
import { fileStamp } from '../state/file-stamp';
import { derToPem } from '@trellis/shared';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { loadFederatedBundle, parseFederationConfig } from './federation';

/** PEM roots by federated trust domain (never our own). Frozen. */
export type FederatedRoots = Readonly<Record<string, readonly string[]>>;

/**
 * Reads the federation config `file` and every bundle it lists. Throws
 * `TRELLIS_LIFECYCLE_BAD_FEDERATION` naming the file and field (or bundle
 * file) on the first unusable one; a root that is not a CA certificate is
 * refused too, since sidecars would refuse the whole bundle for it.
 */
export function loadFederatedRoots(file: string, localTrustDomain: string): FederatedRoots {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${file}: cannot read the federation config (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file }, { cause: err });
  }
  const out: Record<string, readonly string[]> = {};
  for (const entry of parseFederationConfig(text, file, localTrustDomain)) {
    const bundle = loadFederatedBundle(entry);
    bundle.x509Authorities.forEach((c, i) => {
      if (!c.basicConstraints.ca) {
        throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${entry.bundleFile}: authority ${i} of ${entry.trustDomain} is not a CA certificate`, { file: entry.bundleFile, field: `x509Authorities[${i}]` });
      }
    });
    out[entry.trustDomain] = Object.freeze(bundle.x509Authorities.map((c) => derToPem(c.der)));
  }
  return Object.freeze(out);
}

/** A change stamp of the config and its bundle files: what to compare to know whether to re-read. */
export function federationStamp(file: string, bundleFiles: readonly string[]): string {
  return [file, ...bundleFiles].map(fileStamp).join('|');
}

/** What the watcher reports after a check. */
export type FederationReload =
  | { readonly changed: false }
  | { readonly changed: true; readonly roots: FederatedRoots }
  | { readonly changed: false; readonly error: Error };

/**
 * Follows one federation config file. `check()` re-reads it when it or a
 * listed bundle file changed (mtime, size, inode) and returns the new roots;
 * on failure it returns the error and `current` stays the last good set.
 */
export class FederationWatcher {
  private stamp = '';
  private bundleFiles: string[] = [];
  private roots: FederatedRoots = Object.freeze({});

  constructor(
    readonly file: string,
    private readonly localTrustDomain: string,
  ) {}

  /** The last good roots (empty before the first successful load). */
  get current(): FederatedRoots {
    return this.roots;
  }

  /** Loads now; throws on a bad config (used at start-up, where failing loudly is right). */
  load(): FederatedRoots {
    const r = this.check();
    if ('error' in r) throw r.error;
    return this.roots;
  }

  /** Re-reads when something changed; never throws. */
  check(): FederationReload {
    const stamp = federationStamp(this.file, this.bundleFiles);
    if (stamp === this.stamp) return { changed: false };
    try {
      const text = readFileSync(this.file, 'utf8');
      const entries = parseFederationConfig(text, this.file, this.localTrustDomain);
      this.bundleFiles = entries.map((e) => e.bundleFile);
      const after = federationStamp(this.file, this.bundleFiles);
      const roots = loadFederatedRoots(this.file, this.localTrustDomain);
      // Stamped before reading the bundles: a write landing meanwhile is seen at the next check.
      this.stamp = after;
      const changed = JSON.stringify(roots) !== JSON.stringify(this.roots);
      this.roots = roots;
      return changed ? { changed: true, roots } : { changed: false };
    } catch (err) {
      // Remember the failing stamp so a broken file is reported once, not every tick.
      this.stamp = federationStamp(this.file, this.bundleFiles);
      return { changed: false, error: err as Error };
    }
  }
}
