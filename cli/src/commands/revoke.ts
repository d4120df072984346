/**
 * `trellis revoke`: put a SPIFFE ID or a serial on the revocation list (or
 * lift it). Wiring only; the list and its store live in
 * @trellis/control-plane's lifecycle module.
 */
import { join, resolve } from 'node:path';
import { adminRequest, liftInCaDir, loadRevocationStore, pruneRevocations, REVOCATIONS_FILE, revocationsResource, revokeInCaDir } from '@trellis/control-plane';
import { UsageError } from '@trellis/shared';
import { ADMIN_CREDENTIALS_OPTION, adminTarget } from '../admin-target';
import type { Command } from '../command';
import { flag, optionalString, outputFormat, requiredString } from '../flags';

/** `revoke`. */
export const commands: Command[] = [
  {
    name: 'revoke',
    summary: 'Revoke (or --lift) a SPIFFE ID or a certificate serial',
    usage: 'trellis revoke (--admin ADDR [--admin-credentials DIR] | --ca-dir DIR) (--spiffe-id ID | --serial HEX) [--reason TEXT] [--lift]\n       trellis revoke --ca-dir DIR --list [-o json]',
    description: `Writes DIR/revocations.json atomically. A control plane started with
--revocations DIR/revocations.json pushes it to every sidecar on its next refresh, and the
sidecars cut open connections of revoked identities. A serial entry leaves the list once the
certificate has expired (expiry from DIR/audit.log); a SPIFFE ID stays until --lift.
With --admin ADDR the running control plane does the same to its CA dir (under the lifecycle
lock) and pushes the list to every sidecar at once, without waiting for its refresh; that needs
admin credentials (--admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS, see trellis admin credentials).`,
    options: { ...ADMIN_CREDENTIALS_OPTION, admin: { type: 'string' }, 'ca-dir': { type: 'string' }, 'spiffe-id': { type: 'string' }, serial: { type: 'string' }, reason: { type: 'string' }, lift: { type: 'boolean' }, list: { type: 'boolean' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const admin = optionalString(ctx, 'admin');
      if (admin !== undefined) {
        if (optionalString(ctx, 'ca-dir') !== undefined) throw new UsageError('give --admin or --ca-dir, not both', { flag: 'admin' });
        if (flag(ctx, 'list')) throw new UsageError('--list reads the CA dir: use --ca-dir', { flag: 'list' });
        const spiffeId = optionalString(ctx, 'spiffe-id');
        const serial = optionalString(ctx, 'serial');
        if ((spiffeId === undefined) === (serial === undefined)) throw new UsageError('give exactly one of --spiffe-id or --serial', { flag: 'spiffe-id' });
        const target = adminTarget(ctx, admin);
        if (flag(ctx, 'lift')) {
          const r = await adminRequest<{ lifted: string }>(target, 'POST', '/lifecycle/lift', { spiffeId, serial });
          if (outputFormat(ctx) === 'json') ctx.stdout.write(JSON.stringify(r) + '\n');
          else ctx.stdout.write(`lifted ${r.lifted}; the control plane at ${admin} pushed the list to every sidecar\n`);
          return;
        }
        const r = await adminRequest<{ revoked: { kind: string; value: string; reason: string; expiresAt: string | null } }>(target, 'POST', '/lifecycle/revoke', { spiffeId, serial, reason: optionalString(ctx, 'reason') });
        const e = r.revoked;
        if (outputFormat(ctx) === 'json') ctx.stdout.write(JSON.stringify(r) + '\n');
        else ctx.stdout.write(`revoked ${e.kind === 'serial' ? 'serial' : 'SPIFFE ID'} ${e.value} (${e.reason}); listed until ${e.expiresAt ?? 'lifted'}\n  the control plane at ${admin} pushed the list to every sidecar\n`);
        return;
      }
      const caDir = resolve(ctx.cwd, requiredString(ctx, 'ca-dir'));
      const path = join(caDir, REVOCATIONS_FILE);
      const now = new Date();
      const list = pruneRevocations(loadRevocationStore(path), now);
      if (flag(ctx, 'list')) {
        if (outputFormat(ctx) === 'json') ctx.stdout.write(JSON.stringify({ entries: list.entries, pushed: revocationsResource(list, now) }) + '\n');
        else if (list.entries.length === 0) ctx.stdout.write('nothing is revoked\n');
        else for (const e of list.entries) ctx.stdout.write(`${e.kind === 'serial' ? 'serial   ' : 'spiffe-id'} ${e.value}  revoked ${e.revokedAt}  until ${e.expiresAt ?? 'lifted'}  (${e.reason})\n`);
        return;
      }
      const target = { spiffeId: optionalString(ctx, 'spiffe-id'), serial: optionalString(ctx, 'serial') };
      if ((target.spiffeId === undefined) === (target.serial === undefined)) throw new UsageError('give exactly one of --spiffe-id or --serial (or --list)', { flag: 'spiffe-id' });
      const t = target.spiffeId !== undefined ? { spiffeId: target.spiffeId } : { serial: target.serial };
      if (flag(ctx, 'lift')) {
        liftInCaDir(caDir, t, { now });
        ctx.stdout.write(`lifted ${target.spiffeId ?? target.serial}; ${path} updated\n`);
        return;
      }
      const { entry: e } = revokeInCaDir(caDir, t, { now, reason: optionalString(ctx, 'reason') });
      ctx.stdout.write(`revoked ${e.kind === 'serial' ? 'serial' : 'SPIFFE ID'} ${e.value} (${e.reason}); ${e.kind === 'serial' ? `listed until ${e.expiresAt ?? 'lifted'}` : 'listed until lifted'}\n  ${path} updated; a control plane watching it with --revocations pushes it to every sidecar\n`);
    },
  },
];
