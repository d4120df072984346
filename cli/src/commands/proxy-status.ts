/**
 * `trellis proxy-status`: every sidecar connected to a control plane, with
 * its identity, per-type sync state and certificate expiry, read from the
 * admin endpoint's /debug/proxies (mTLS with admin credentials).
 */
import { adminRequest } from '@trellis/control-plane';
import { UsageError } from '@trellis/shared';
import { ADMIN_CREDENTIALS_OPTION, adminTarget } from '../admin-target';
import type { Command } from '../command';
import { optionalString, outputFormat } from '../flags';

interface TypeState {
  state: string;
  lastError: string | null;
}
interface Proxy {
  spiffeId: string | null;
  address: string | null;
  certificateExpiry: string | null;
  types: Record<string, TypeState>;
}

const COLUMNS = ['svid', 'bundle', 'peer_authn', 'authz', 'revocations', 'endpoints'];

export const commands: Command[] = [
  {
    name: 'proxy-status',
    summary: 'Show every sidecar connected to the control plane and its sync state',
    usage: 'trellis proxy-status [--admin 127.0.0.1:15014] [--admin-credentials DIR] [-o text|json]',
    description: `States per type: SYNCED (ACKed the latest), STALE (sent, not yet ACKed),
NACKED (rejected; the error is shown), NOT_SENT (not subscribed or nothing sent yet).
Needs admin credentials (--admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS).`,
    options: { ...ADMIN_CREDENTIALS_OPTION, admin: { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const admin = optionalString(ctx, 'admin') ?? '127.0.0.1:15014';
      if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(admin)) throw new UsageError(`--admin must be host:port, got "${admin}"`, { flag: 'admin' });
      const format = outputFormat(ctx);
      const body = await adminRequest<{ proxies: Proxy[] }>(adminTarget(ctx, admin), 'GET', '/debug/proxies');
      if (format === 'json') {
        ctx.stdout.write(JSON.stringify(body.proxies, null, 2) + '\n');
        return 0;
      }
      const rows = [['SPIFFE ID', 'ADDRESS', 'CERT EXPIRES', ...COLUMNS.map((c) => c.toUpperCase())]];
      const errors: string[] = [];
      for (const p of body.proxies) {
        rows.push([p.spiffeId ?? '-', p.address ?? '-', p.certificateExpiry ?? '-', ...COLUMNS.map((c) => p.types[c]?.state ?? 'NOT_SENT')]);
        for (const c of COLUMNS) if (p.types[c]?.state === 'NACKED') errors.push(`${p.spiffeId} ${c}: ${p.types[c]!.lastError}`);
      }
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) ctx.stdout.write(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
      if (errors.length) ctx.stdout.write('\nrejections:\n' + errors.map((e) => '  ' + e).join('\n') + '\n');
      if (body.proxies.length === 0) ctx.stdout.write('(no sidecars connected)\n');
      return 0;
    },
  },
];
