/**
 * A real SoftHSM2 token in a temp dir for the HSM tests.
 *
 * SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, so a
 * fixture points it at its own config (token dir under the temp dir) for the
 * duration of a suite and restores it afterwards. The PKCS#11 module is
 * finalised when the last signer closes, so each suite gets a fresh read.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';

/** Where Debian's `softhsm2` package puts the module. */
export const SOFTHSM_MODULE = process.env.TRELLIS_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

/** Why SoftHSM2 cannot be used here, or undefined when it can. */
export function softHsmUnavailable(): string | undefined {
  if (!existsSync(SOFTHSM_MODULE)) return `SoftHSM2 module ${SOFTHSM_MODULE} not found (apt-get install -y softhsm2)`;
  const r = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'softhsm2-util is not runnable (apt-get install -y softhsm2)';
  try {
    require('pkcs11js');
  } catch (err) {
    return `the pkcs11js binding does not load (${(err as Error).message.split('\n')[0]})`;
  }
  return undefined;
}

/** Skips the suite (from a `before` hook), printing why, when SoftHSM2 is not usable here. */
export function skipWithoutSoftHsm(ctx: Mocha.Context): void {
  const why = softHsmUnavailable();
  if (!why) return;
  // eslint-disable-next-line no-console
  console.log(`      skipping: ${why}`);
  ctx.skip();
}

/** One SoftHSM2 installation with initialised tokens. */
export interface SoftHsm {
  dir: string;
  conf: string;
  /** Initialises a token; returns its label and user PIN (random per run). */
  initToken(label: string): { label: string; pin: string; pinFile: string };
  /** Restores SOFTHSM2_CONF and removes the temp dir. */
  cleanup(): void;
}

/** Creates a SoftHSM2 config in a temp dir and points `SOFTHSM2_CONF` at it. */
export function createSoftHsm(): SoftHsm {
  const tmp = makeTmpDir('trellis-softhsm-');
  const tokens = join(tmp.dir, 'tokens');
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(tmp.dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  return {
    dir: tmp.dir,
    conf,
    initToken(label) {
      const pin = randomBytes(6).toString('hex');
      const so = randomBytes(6).toString('hex');
      const r = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', so, '--pin', pin], { encoding: 'utf8', env: { ...process.env, SOFTHSM2_CONF: conf } });
      if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr}`);
      const pinFile = join(tmp.dir, `${label}.pin`);
      writeFileSync(pinFile, pin + '\n', { mode: 0o600 });
      return { label, pin, pinFile };
    },
    cleanup() {
      if (previous === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = previous;
      tmp.cleanup();
    },
  };
}
