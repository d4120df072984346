/**
 * The CA as the running control plane sees it across rotations: a
 * {@link CertificateAuthority} held behind one reference and replaced whole
 * when the CA dir's certificates change (an activated intermediate, a root
 * added or dropped by a rotation). A reload that fails keeps the last good
 * CA and is logged; the trust domain may never change under a running
 * control plane.
 *
 * It also refuses to issue for a SPIFFE ID on the revocation list until the
 * entry is lifted (fail closed: an unreadable list keeps the last good one).
 */
import { fileStamp } from '../state/file-stamp';
import { join } from 'node:path';
import type { Logger } from '@trellis/shared';
import { CA_FILES } from '../ca/ca-dir';
import type { CertificateAuthority, IssueRequest, IssuedSvid } from '../ca/certificate-authority';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';
import { EMPTY_REVOCATIONS, isRenewalRefused, type RevocationList } from './revocation-list';
import { loadRevocationStore, REVOCATIONS_FILE } from './revocation-store';

/** Collaborators of a {@link ReloadingAuthority}. */
export interface ReloadingAuthorityDeps {
  /** Loads the CA from the dir (the CLI passes `loadCertificateAuthority` with its signer and logger). */
  load(dir: string): Promise<CertificateAuthority>;
  logger: Logger;
  clock?: () => Date;
  /** How long a replaced CA stays open for issuances already in flight. */
  closeDelayMs?: number;
  /** The revocation list shared by the replicas (the API server's); default the CA dir's revocations.json. */
  revocations?: () => RevocationList;
}

const WATCHED = [CA_FILES.intermediateCert, CA_FILES.chain, CA_FILES.rootCert, CA_FILES.intermediateKey];

function stampOf(dir: string, names: readonly string[]): string {
  return names.map((n) => `${n}:${fileStamp(join(dir, n))}`).join('|');
}

/** A CA that follows its directory. Create with {@link openReloadingAuthority}. */
export class ReloadingAuthority {
  private ca: CertificateAuthority;
  private stamp: string;
  private revStamp = '';
  private revocations: RevocationList = EMPTY_REVOCATIONS;
  private reloading: Promise<boolean> | null = null;
  private readonly retired = new Set<NodeJS.Timeout>();

  /** @internal use {@link openReloadingAuthority}. */
  constructor(readonly caDir: string, first: CertificateAuthority, private readonly deps: ReloadingAuthorityDeps) {
    this.ca = first;
    this.stamp = stampOf(caDir, WATCHED);
    this.loadRevocations();
  }

  /** The trust domain (fixed for the life of the process). */
  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  /** The CA currently issuing. */
  get current(): CertificateAuthority {
    return this.ca;
  }

  /** The current roots, PEM. */
  trustBundle(): { rootsPem: string[] } {
    return this.ca.trustBundle();
  }

  /** Expiry view for the `trellis_ca_*_expiry_seconds` gauges. */
  expiry(): { intermediateNotAfter: Date; rootNotAfter: Date } {
    return { intermediateNotAfter: this.ca.intermediateNotAfter, rootNotAfter: this.ca.rootNotAfter };
  }

  /**
   * Issues from the current CA. Refuses with REVOKED when `spiffeId` is on
   * the revocation list (until lifted): fails closed.
   */
  async issue(req: IssueRequest): Promise<IssuedSvid> {
    const refusal = isRenewalRefused(this.deps.revocations ? this.deps.revocations() : this.revocations, req.spiffeId);
    if (refusal.refused) throw new LifecycleError(LifecycleErrorCode.REVOKED, `${req.spiffeId} is revoked (${refusal.reason}); lift it with "trellis revoke --lift" first`, { spiffeId: req.spiffeId });
    return this.ca.issue(req);
  }

  /**
   * Re-reads the dir when its certificates changed. Resolves true when a new
   * CA was swapped in; false when nothing changed or the reload failed (the
   * previous CA keeps issuing).
   */
  refresh(): Promise<boolean> {
    this.loadRevocations();
    if (this.reloading) return this.reloading;
    const stamp = stampOf(this.caDir, WATCHED);
    if (stamp === this.stamp) return Promise.resolve(false);
    this.reloading = (async () => {
      try {
        const next = await this.deps.load(this.caDir);
        if (next.trustDomain !== this.ca.trustDomain) {
          next.close();
          throw new LifecycleError(LifecycleErrorCode.BAD_STATE, `the CA dir now serves trust domain ${next.trustDomain}, not ${this.ca.trustDomain}; restart the control plane to change trust domains`, {});
        }
        const old = this.ca;
        this.ca = next;
        this.stamp = stamp;
        const t = setTimeout(() => {
          this.retired.delete(t);
          old.close();
        }, this.deps.closeDelayMs ?? 30_000);
        t.unref();
        this.retired.add(t);
        this.deps.logger.info('ca reloaded', { intermediateNotAfter: next.intermediateNotAfter.toISOString(), roots: next.trustBundle().rootsPem.length });
        return true;
      } catch (err) {
        // Keep issuing from the last good CA; try again once the files change again.
        this.stamp = stamp;
        this.deps.logger.error('ca reload failed; the previous intermediate keeps issuing', { error: err });
        return false;
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  /** Closes the current CA and any retired one. */
  close(): void {
    for (const t of this.retired) clearTimeout(t);
    this.retired.clear();
    this.ca.close();
  }

  private loadRevocations(): void {
    if (this.deps.revocations) return;
    const path = join(this.caDir, REVOCATIONS_FILE);
    const stamp = stampOf(this.caDir, [REVOCATIONS_FILE]);
    if (stamp === this.revStamp) return;
    try {
      this.revocations = loadRevocationStore(path);
      this.revStamp = stamp;
    } catch (err) {
      this.deps.logger.error('revocation list not reloaded; keeping the last good list', { file: path, error: err });
    }
  }
}

/** Loads the CA in `caDir` and returns it wrapped so it follows the dir. */
export async function openReloadingAuthority(caDir: string, deps: ReloadingAuthorityDeps): Promise<ReloadingAuthority> {
  return new ReloadingAuthority(caDir, await deps.load(caDir), deps);
}
