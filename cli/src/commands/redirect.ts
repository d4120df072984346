/** `trellis redirect apply`: the init container's iptables step. */
import { readFileSync } from 'node:fs';
import { UsageError } from '@trellis/shared';
import { applyRedirect, parseRedirectPorts, renderRestore, spawnRunner, type IpFamily, type RedirectPlan } from '@trellis/injector-webhook';
import type { Command, CommandContext } from '../command';
import { flag, optionalString, stringList } from '../flags';

/** True when this network namespace has IPv6 addresses (so IPv6 must be redirected too). */
function hasIpv6(): boolean {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8').trim() !== '';
  } catch {
    return false;
  }
}

function families(ctx: CommandContext): IpFamily[] {
  const mode = optionalString(ctx, 'ipv6') ?? 'auto';
  if (mode !== 'auto' && mode !== 'on' && mode !== 'off') throw new UsageError(`--ipv6 must be auto, on or off, got "${mode}"`, { flag: 'ipv6' });
  return mode === 'on' || (mode === 'auto' && hasIpv6()) ? [4, 6] : [4];
}

/** The commands this module adds to `trellis`. */
export const commands: Command[] = [
  {
    name: 'redirect apply',
    summary: 'Redirect inbound TCP for app ports to the sidecar with iptables (the init container step)',
    usage: 'trellis redirect apply --inbound APP_PORT=PROXY_PORT[,...] ... [--proxy-uid UID] [--ipv6 auto|on|off] [--dry-run]',
    description: `Installs nat rules in two chains of its own (TRELLIS_INBOUND from PREROUTING,
TRELLIS_OUTPUT from OUTPUT) with iptables-restore --noflush; running it again replaces them.
Inbound TCP to each APP_PORT is redirected to PROXY_PORT; connections from inside the pod to
its own non-loopback addresses are redirected too, except from --proxy-uid and to loopback.
Needs NET_ADMIN (and NET_RAW) in the pod's network namespace.

  --inbound APP=PROXY[,...]   repeatable
  --proxy-uid UID             the sidecar's UID, never redirected
  --ipv6 auto|on|off          also program ip6tables; auto (default) = when the namespace has
                              IPv6 addresses, so a dual-stack pod cannot be reached around the sidecar
  --dry-run                   print the iptables-restore input and change nothing`,
    options: {
      inbound: { type: 'string', multiple: true },
      'proxy-uid': { type: 'string' },
      'dry-run': { type: 'boolean' },
      ipv6: { type: 'string' },
    },
    async run(ctx) {
      const inbound = parseRedirectPorts(stringList(ctx, 'inbound'));
      if (inbound.length === 0) throw new UsageError('--inbound is required (APP_PORT=PROXY_PORT)', { flag: 'inbound' });
      const uidText = optionalString(ctx, 'proxy-uid');
      let proxyUid: number | undefined;
      if (uidText !== undefined) {
        if (!/^[0-9]+$/.test(uidText) || Number(uidText) > 2 ** 31 - 1) throw new UsageError(`--proxy-uid must be a numeric UID, got "${uidText}"`, { flag: 'proxy-uid' });
        proxyUid = Number(uidText);
      }
      const plan: RedirectPlan = proxyUid === undefined ? { inbound } : { inbound, proxyUid };
      const fams = families(ctx);
      if (flag(ctx, 'dry-run')) {
        for (const f of fams) ctx.stdout.write(`# ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush\n${renderRestore(plan, f)}`);
        return;
      }
      await applyRedirect(plan, { run: spawnRunner, families: fams });
      ctx.stdout.write(`redirected ${inbound.map((p) => `${p.appPort}->${p.proxyPort}`).join(', ')} (IPv${fams.join(', IPv')})\n`);
    },
  },
];
