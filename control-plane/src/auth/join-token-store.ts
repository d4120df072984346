/**
 * On-disk state for join tokens, under `<ca-dir>/join-tokens/`:
 * `hmac.key` (0600, the signing key, created once) and `used/<jti>.<n>`, one
 * file per use. A use is claimed by creating its file exclusively (O_EXCL), so
 * two replicas sharing the dir, or a restarted control plane, can never grant
 * the same use twice.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ControlPlaneError, ControlPlaneErrorCode } from '../errors/control-plane-error';

/** The join-token key and the use records of one CA dir. */
export class JoinTokenStore {
  private readonly dir: string;

  constructor(caDir: string) {
    this.dir = join(caDir, 'join-tokens');
  }

  /** Reads the signing key, creating it (0600) when `create` and absent. */
  key(create: boolean): Buffer {
    const file = join(this.dir, 'hmac.key');
    if (!existsSync(file)) {
      if (!create) throw new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `${file}: missing; create a token with "trellis token create" first`, { file });
      mkdirSync(join(this.dir, 'used'), { recursive: true, mode: 0o700 });
      try {
        const fd = openSync(file, 'wx', 0o600);
        writeSync(fd, randomBytes(32).toString('base64') + '\n');
        closeSync(fd);
        chmodSync(file, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(file, err);
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
   * Claims one use of token `tokenId` (allowed `uses` times). Returns the use
   * number, or throws TRELLIS_CP_TOKEN_SPENT when every use is taken.
   */
  consume(tokenId: string, uses: number): number {
    const usedDir = join(this.dir, 'used');
    mkdirSync(usedDir, { recursive: true, mode: 0o700 });
    for (let n = 1; n <= uses; n++) {
      const file = join(usedDir, `${tokenId}.${n}`);
      try {
        const fd = openSync(file, 'wx', 0o600);
        writeSync(fd, new Date().toISOString() + '\n');
        closeSync(fd);
        return n;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw storeError(file, err);
      }
    }
    throw new ControlPlaneError(ControlPlaneErrorCode.TOKEN_SPENT, `join token ${tokenId} already used ${uses} time(s)`, { tokenId });
  }
}

function storeError(file: string, err: unknown): ControlPlaneError {
  return new ControlPlaneError(ControlPlaneErrorCode.JOIN_TOKEN_STORE, `${file}: ${(err as Error).message}`, { file }, { cause: err });
}
