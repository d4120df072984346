/**
 * The iptables rules the init container installs, as a pure function.
 *
 * Inbound TCP for each app port is REDIRECTed (nat PREROUTING) to the
 * sidecar's listener for it, so a peer dialing the app port directly lands on
 * the sidecar and STRICT cannot be bypassed. Connections made inside the pod
 * to one of its own non-loopback addresses are redirected too (nat OUTPUT),
 * except those from the sidecar's UID and those to loopback, which is how the
 * sidecar itself reaches the app. All rules live in two chains of our own, so
 * re-applying replaces them instead of piling up duplicates.
 */
import { InjectorError } from '../errors/injector-error';

/** Our chain for inbound traffic (jumped to from nat PREROUTING). */
export const INBOUND_CHAIN = 'TRELLIS_INBOUND';
/** Our chain for in-pod traffic (jumped to from nat OUTPUT). */
export const OUTPUT_CHAIN = 'TRELLIS_OUTPUT';

/** One app port and the sidecar port its traffic goes to. */
export interface RedirectPort {
  readonly appPort: number;
  readonly proxyPort: number;
}

/** The input of the rule builder. */
export interface RedirectPlan {
  readonly inbound: readonly RedirectPort[];
  /** UID whose connections are never redirected (the sidecar). Omit to skip the owner rule. */
  readonly proxyUid?: number;
}

/** Address family of a rule set: iptables (4) or ip6tables (6). */
export type IpFamily = 4 | 6;

/**
 * Parses `--inbound` values: each a comma-separated list of `APP_PORT=PROXY_PORT`.
 * Throws TRELLIS_INJECTOR_BAD_REDIRECT naming the entry; an app port given twice
 * or a proxy port that is also an app port is refused (it would loop).
 */
export function parseRedirectPorts(values: readonly string[]): RedirectPort[] {
  const out: RedirectPort[] = [];
  for (const entry of values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^([0-9]{1,5})=([0-9]{1,5})$/.exec(entry);
    const app = m ? Number(m[1]) : NaN;
    const proxy = m ? Number(m[2]) : NaN;
    if (!m || app < 1 || app > 65535 || proxy < 1 || proxy > 65535) {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_REDIRECT', `--inbound "${entry}": expected APP_PORT=PROXY_PORT with ports from 1 to 65535`, { flag: 'inbound', entry });
    }
    if (out.some((p) => p.appPort === app)) {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_REDIRECT', `--inbound "${entry}": app port ${app} is given twice`, { flag: 'inbound', entry });
    }
    out.push({ appPort: app, proxyPort: proxy });
  }
  for (const p of out) {
    if (out.some((q) => q.appPort === p.proxyPort)) {
      throw new InjectorError('TRELLIS_INJECTOR_BAD_REDIRECT', `--inbound: proxy port ${p.proxyPort} is also an app port; traffic would loop`, { flag: 'inbound', port: p.proxyPort });
    }
  }
  return out;
}

/** The nat rules as iptables argument lists (without the `iptables -t nat` prefix). */
export function buildRedirectRules(plan: RedirectPlan, family: IpFamily = 4): string[][] {
  const rules: string[][] = [
    ['-A', 'PREROUTING', '-p', 'tcp', '-j', INBOUND_CHAIN],
    ['-A', 'OUTPUT', '-p', 'tcp', '-j', OUTPUT_CHAIN],
  ];
  for (const p of plan.inbound) {
    rules.push(['-A', INBOUND_CHAIN, '-p', 'tcp', '--dport', String(p.appPort), '-j', 'REDIRECT', '--to-ports', String(p.proxyPort)]);
  }
  if (plan.proxyUid !== undefined) rules.push(['-A', OUTPUT_CHAIN, '-m', 'owner', '--uid-owner', String(plan.proxyUid), '-j', 'RETURN']);
  rules.push(['-A', OUTPUT_CHAIN, '-d', family === 4 ? '127.0.0.0/8' : '::1/128', '-j', 'RETURN']);
  for (const p of plan.inbound) {
    rules.push(['-A', OUTPUT_CHAIN, '-p', 'tcp', '-m', 'addrtype', '--dst-type', 'LOCAL', '--dport', String(p.appPort), '-j', 'REDIRECT', '--to-ports', String(p.proxyPort)]);
  }
  return rules;
}

/**
 * The rules as `iptables-restore --noflush` input. Declaring our chains there
 * creates them or flushes them if present; nothing else in the table is touched.
 */
export function renderRestore(plan: RedirectPlan, family: IpFamily = 4): string {
  return ['*nat', `:${INBOUND_CHAIN} - [0:0]`, `:${OUTPUT_CHAIN} - [0:0]`, ...buildRedirectRules(plan, family).map((r) => r.join(' ')), 'COMMIT', ''].join('\n');
}

/**
 * The commands that remove our jumps from the built-in chains before a
 * re-apply (each is run until it fails, i.e. until no such jump is left).
 */
export function jumpDeletions(): string[][] {
  return [
    ['-t', 'nat', '-D', 'PREROUTING', '-p', 'tcp', '-j', INBOUND_CHAIN],
    ['-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '-j', OUTPUT_CHAIN],
  ];
}
