/**
 * On-disk state for join tokens, under `<ca-dir>/join-tokens/`:
 * `hmac.key` (0600, the signing key, created once) and `used/<jti>.<n>`, one
 * file per use. Both are created exclusively and whole (a complete temp
 * file hard-linked into place, state/atomic-file.ts), so two replicas
 * sharing the dir, or a restarted control plane, can never grant the same
 * use twice, and a write that fails (a full disk) leaves no record: the use
 * is not spent.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';
import { createFileExclusive } from '../state/atomic-file';
import type { TokenUses } from './token-uses';

/** The join-token key and the use records of one CA dir. */
export class JoinTokenStore implements TokenUses {
  private readonly dir: string;

  constructor(caDir: string) {
    this.dir = join(caDir, 'join-tokens');
  }

  /** Reads the signing key, creating it (0600) when `create` and absent. */
  key(create: boolean): Buffer {
    const file = join(this.dir, 'hmac.key');
    if (!existsSync(file)) {
      if (!create) throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `${file}: missing; create a token with "trellis token create" first`, { file });
      try {
        mkdirSync(join(this.dir, 'used'), { recursive: true, mode: 0o700 });
        // Another process creating it at the same moment wins; we read theirs below.
        createFileExclusive(file, randomBytes(32).toString('base64') + '\n', 0o600);
      } catch (err) {
        throw storeError(file, err);
      }
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw storeError(file, err);
    }
    const key = Buffer.from(text, 'base64');
    if (key.length < 32) throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `${file}: key shorter than 32 bytes`, { file });
    return key;
  }

  /** True when the key exists (join tokens are accepted only then). */
  hasKey(): boolean {
    return existsSync(join(this.dir, 'hmac.key'));
  }

  /**
   * Claims one use of token `tokenId` (allowed `uses` times). Resolves with
   * the use number; TRELLIS_CP_TOKEN_SPENT when every use is taken;
   * TRELLIS_CP_JOIN_TOKEN_STORE (nothing claimed) when the record could not be written.
   */
  async consume(tokenId: string, uses: number, expiresAtMs = 0): Promise<number> {
    const usedDir = join(this.dir, 'used');
    for (let n = 1; n <= uses; n++) {
      const file = join(usedDir, `${tokenId}.${n}`);
      try {
        mkdirSync(usedDir, { recursive: true, mode: 0o700 });
        const record = JSON.stringify({ usedAt: new Date().toISOString(), expiresAt: new Date(expiresAtMs).toISOString() }) + '\n';
        if (createFileExclusive(file, record, 0o600)) return n;
        // An empty record is a claim whose write failed (written by releases before records were
        // created whole): it spent nothing. Older than a moment, so not one being written right now.
        if (tornRecord(file) && (rmSync(file, { force: true }), createFileExclusive(file, record, 0o600))) return n;
      } catch (err) {
        throw storeError(file, err);
      }
    }
    throw new ControlPlaneError(ControlPlaneErrorCode.TOKEN_SPENT, `join token ${tokenId} already used ${uses} time(s)`, { tokenId });
  }

  /** Gives back a use whose SVID was never handed out. */
  async release(tokenId: string, use: number): Promise<void> {
    try {
      rmSync(join(this.dir, 'used', `${tokenId}.${use}`), { force: true });
    } catch (err) {
      throw storeError(join(this.dir, 'used', `${tokenId}.${use}`), err);
    }
  }
}

function tornRecord(file: string): boolean {
  try {
    const st = statSync(file);
    return st.size === 0 && Date.now() - st.mtimeMs > 10_000;
  } catch {
    return false;
  }
}

function storeError(file: string, err: unknown): ControlPlaneError {
  return new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `${file}: ${(err as Error).message}`, { file, reason: (err as NodeJS.ErrnoException).code ?? 'error' }, { cause: err });
}
