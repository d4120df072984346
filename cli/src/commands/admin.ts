/**
 * `trellis admin credentials`: a short-lived admin certificate and key for
 * the control plane's admin API. Wiring only; issuance lives in
 * @trellis/control-plane's admin module.
 */
import { resolve } from 'node:path';
import { DEFAULT_ADMIN_CREDENTIAL_TTL_SECONDS, issueAdminCredentials, loadSigner } from '@trellis/control-plane';
import { DurationError, parseDurationSeconds, UsageError } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString, outputFormat, requiredString } from '../flags';

/** `admin credentials`. */
export const commands: Command[] = [
  {
    name: 'admin credentials',
    summary: 'Write a short-lived admin certificate and key for the control plane admin API (--admin)',
    usage: 'trellis admin credentials --ca-dir DIR --out DIR [--spiffe-id ID] [--ttl 8h] [-o json]',
    description: `Run where the CA dir is. The intermediate issues an X.509-SVID for --spiffe-id (default
spiffe://TD/ns/trellis-system/sa/trellis-admin, the control plane's default admin allow-list) valid
for --ttl (1m..24h, default 8h), and --out receives, every file 0600:
  svid.pem    the certificate and its intermediate
  svid.key    its private key (made here; it never leaves this machine)
  bundle.pem  the mesh roots, to verify the control plane's certificate
Then: trellis ca status --admin ADDR --admin-credentials DIR (or TRELLIS_ADMIN_CREDENTIALS=DIR).
The issuance is a line in DIR/audit.log; revoke a lost credential with
trellis revoke --serial SERIAL. When DIR holds signer.yaml, the HSM-held key signs.`,
    options: { 'ca-dir': { type: 'string' }, out: { type: 'string' }, 'spiffe-id': { type: 'string' }, ttl: { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const caDir = resolve(ctx.cwd, requiredString(ctx, 'ca-dir'));
      const out = resolve(ctx.cwd, requiredString(ctx, 'out'));
      let ttlSeconds = DEFAULT_ADMIN_CREDENTIAL_TTL_SECONDS;
      const ttl = optionalString(ctx, 'ttl');
      if (ttl !== undefined) {
        try {
          ttlSeconds = parseDurationSeconds(ttl, '--ttl');
        } catch (err) {
          if (err instanceof DurationError) throw new UsageError(err.message, { flag: 'ttl' });
          throw err;
        }
      }
      const signer = loadSigner(caDir, { env: ctx.env });
      try {
        const r = await issueAdminCredentials(caDir, out, { spiffeId: optionalString(ctx, 'spiffe-id'), ttlSeconds, requester: `cli:${ctx.env.USER ?? 'unknown'}`, signer: signer ?? undefined });
        if (outputFormat(ctx) === 'json') {
          ctx.stdout.write(JSON.stringify({ dir: r.dir, spiffeId: r.spiffeId, serial: r.serialHex, notAfter: r.notAfter.toISOString(), files: r.files }) + '\n');
          return;
        }
        ctx.stdout.write(`admin credentials for ${r.spiffeId} (serial ${r.serialHex}) valid until ${r.notAfter.toISOString()}\n  in ${r.dir}: ${r.files.join(', ')}\n  use: export TRELLIS_ADMIN_CREDENTIALS=${r.dir}\n`);
      } finally {
        signer?.close();
      }
    },
  },
];
