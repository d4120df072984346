/**
 * How a CLI command reaches a control plane's admin endpoint: its
 * `--admin ADDR` plus the admin credentials from `--admin-credentials DIR`
 * or `TRELLIS_ADMIN_CREDENTIALS`. Without credentials the command fails
 * with TRELLIS_ADMIN_CREDENTIALS_MISSING before it sends anything.
 */
import { resolve } from 'node:path';
import { AdminError, AdminErrorCode, loadAdminCredentials, type AdminTarget } from '@trellis/control-plane';
import type { CommandContext, OptionSpec } from './command';
import { optionalString } from './flags';

/** The option every command that talks to --admin declares. */
export const ADMIN_CREDENTIALS_OPTION: OptionSpec = Object.freeze({ 'admin-credentials': { type: 'string' } });

/** The usage text of that option. */
export const ADMIN_CREDENTIALS_HELP = `--admin-credentials DIR  admin credentials (trellis admin credentials --out DIR); default $TRELLIS_ADMIN_CREDENTIALS`;

/** The admin target for `address`, with credentials loaded and checked; CREDENTIALS_MISSING / BAD_CREDENTIALS otherwise. */
export function adminTarget(ctx: CommandContext, address: string): AdminTarget {
  const dir = optionalString(ctx, 'admin-credentials') ?? (ctx.env.TRELLIS_ADMIN_CREDENTIALS || undefined);
  if (dir === undefined || dir === '') {
    throw new AdminError(
      AdminErrorCode.CREDENTIALS_MISSING,
      `the admin endpoint ${address} needs admin credentials: run "trellis admin credentials --ca-dir CA_DIR --out DIR", then pass --admin-credentials DIR or set TRELLIS_ADMIN_CREDENTIALS=DIR`,
      { admin: address },
    );
  }
  return { address, credentials: loadAdminCredentials(resolve(ctx.cwd, dir), new Date()) };
}
