/** `trellis redirect apply`: the init container's iptables step. */
import { UsageError } from '@trellis/shared';
import { applyRedirect, parseRedirectPorts, renderRestore, spawnRunner, type RedirectPlan } from '@trellis/injector-webhook';
import type { Command } from '../command';
import { flag, optionalString, stringList } from '../flags';

export const commands: Command[] = [
  {
    name: 'redirect apply',
    summary: 'Redirect inbound TCP for app ports to the sidecar with iptables (the init container step)',
    usage: 'trellis redirect apply --inbound APP_PORT=PROXY_PORT[,...] ... [--proxy-uid UID] [--dry-run]',
    description: `Installs nat rules in two chains of its own (TRELLIS_INBOUND from PREROUTING,
TRELLIS_OUTPUT from OUTPUT) with iptables-restore --noflush; running it again replaces them.
Inbound TCP to each APP_PORT is redirected to PROXY_PORT; connections from inside the pod to
its own non-loopback addresses are redirected too, except from --proxy-uid and to loopback.
Needs NET_ADMIN (and NET_RAW) in the pod's network namespace.

  --inbound APP=PROXY[,...]   repeatable
  --proxy-uid UID             the sidecar's UID, never redirected
  --dry-run                   print the iptables-restore input and change nothing`,
    options: {
      inbound: { type: 'string', multiple: true },
      'proxy-uid': { type: 'string' },
      'dry-run': { type: 'boolean' },
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
      if (flag(ctx, 'dry-run')) {
        ctx.stdout.write(renderRestore(plan));
        return;
      }
      await applyRedirect(plan, { run: spawnRunner });
      ctx.stdout.write(`redirected ${inbound.map((p) => `${p.appPort}->${p.proxyPort}`).join(', ')}\n`);
    },
  },
];
