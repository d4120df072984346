/**
 * A real SoftHSM2 token in a temp dir for the HSM tests.
 *
 * SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, so a
 * fixture points it at its own config (token dir under the temp dir) for the
 * duration of a suite and restores it afterwards. The PKCS#11 module is
 * finalised when the last signer closes, so each suite gets a fresh read.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';

// Whether SoftHSM2 is usable here, and the module path, are @trellis/testkit's SOFTHSM and SOFTHSM_MODULE.
export { SOFTHSM_MODULE } from '@trellis/testkit';

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
