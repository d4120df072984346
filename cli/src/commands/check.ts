/**
 * `trellis check`: every certificate the mesh depends on with its expiry, a
 * warning inside the thresholds, a non-zero exit when one is critical or
 * expired, and what to run. Reads the CA dir, asks the control plane's
 * admin endpoint for the sidecars' leaves, and opens real TLS connections
 * to read serving certificates. Decisions live in @trellis/control-plane.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { adminRequest, buildCheckReport, caDirCheckItems, CA_FILES, checkExitCode, DEFAULT_THRESHOLDS, humanSeconds, loadFederatedBundle, parseFederationConfig, readAuditLog, readIntermediateSlots, type CheckSubject } from '@trellis/control-plane';
import { parseHostPort, UsageError } from '@trellis/shared';
import { ADMIN_CREDENTIALS_OPTION, adminTarget } from '../admin-target';
import type { Command, CommandContext } from '../command';
import { optionalString, outputFormat, stringList } from '../flags';

const DAY = 86_400;

/** Reads the certificate a TLS server presents at host:port (no trust decision is made on it). */
function servingCertificate(addr: string, timeoutMs = 5000): Promise<X509Certificate> {
  const hp = parseHostPort(addr);
  if (typeof hp === 'string') return Promise.reject(new UsageError(`"${addr}" is not host:port (${hp})`, {}));
  return new Promise((res, rej) => {
    const s = connect({ host: hp.host, port: hp.port, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'], timeout: timeoutMs }, () => {
      const c = s.getPeerX509Certificate();
      s.destroy();
      if (c) res(c);
      else rej(new Error('no certificate presented'));
    });
    s.on('timeout', () => s.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    s.on('error', rej);
  });
}

function daysOption(ctx: CommandContext, name: string): number | undefined {
  const v = optionalString(ctx, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} must be a number of days, got "${v}"`, { flag: name });
  return n;
}

/** `check`. */
export const commands: Command[] = [
  {
    name: 'check',
    summary: 'List every certificate with its expiry; exit 1 when one is critical or expired',
    usage: 'trellis check [--ca-dir DIR] [--admin ADDR [--admin-credentials DIR]] [--tls NAME=HOST:PORT ...] [--federation FILE] [--warn-days N] [--critical-days N] [-o json]',
    description: `--ca-dir   roots, the current intermediate and the next one (warns once the intermediate is past
           half its life without a signed successor, the alarm for an offline root)
--admin    the control plane's admin address: each connected sidecar's leaf (needs admin
           credentials: --admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS)
--tls      a serving certificate read over TLS, e.g. --tls control-plane=127.0.0.1:15010
           --tls injector=127.0.0.1:9443 (repeatable)
--federation the federatesWith config: every federated trust domain's roots (a bad entry is an error)
--warn-days / --critical-days override the root and intermediate thresholds (default 60/14
for intermediates, 180/30 for roots). Exit 0 when all are ok or warn, 1 when any is
critical or expired, 2 on usage errors.`,
    options: { ...ADMIN_CREDENTIALS_OPTION, 'ca-dir': { type: 'string' }, admin: { type: 'string' }, tls: { type: 'string', multiple: true }, federation: { type: 'string' }, 'warn-days': { type: 'string' }, 'critical-days': { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const caDir = optionalString(ctx, 'ca-dir');
      const admin = optionalString(ctx, 'admin');
      const tls = stringList(ctx, 'tls');
      const federation = optionalString(ctx, 'federation');
      if (caDir === undefined && admin === undefined && tls.length === 0 && federation === undefined) throw new UsageError('give at least one of --ca-dir, --admin, --tls or --federation', { flag: 'ca-dir' });
      const format = outputFormat(ctx);
      const now = new Date();
      const subjects: CheckSubject[] = [];
      const notes: string[] = [];
      if (caDir !== undefined) {
        const r = caDirCheckItems(resolve(ctx.cwd, caDir), now);
        subjects.push(...r.subjects);
        notes.push(...r.notes);
      }
      const target = admin === undefined ? undefined : adminTarget(ctx, admin);
      if (target !== undefined) {
        try {
          const reply = await adminRequest<unknown>(target, 'GET', '/debug/proxies', undefined, 5000);
          const proxies = (reply as { proxies?: Array<{ id: number; spiffeId: string | null; certificateExpiry: string | null }> }).proxies ?? [];
          // The audit log tells when each leaf was issued, so its lifetime (and the fractional thresholds) are known.
          const issued = new Map<string, Date>();
          if (caDir !== undefined) {
            for (const r of readAuditLog(join(resolve(ctx.cwd, caDir), CA_FILES.auditLog)).records) issued.set(`${r.spiffeId} ${new Date(r.notAfter).toISOString()}`, new Date(Date.parse(r.time) - 60_000));
          }
          for (const p of proxies) {
            if (!p.certificateExpiry) continue;
            const notAfter = new Date(p.certificateExpiry);
            subjects.push({ kind: 'leaf', name: `sidecar ${p.id}`, subject: p.spiffeId ?? '(unauthenticated)', notBefore: issued.get(`${p.spiffeId} ${notAfter.toISOString()}`) ?? null, notAfter, fix: `the sidecar is not renewing its SVID: see trellis proxy-status --admin ${admin}, and restart it` });
          }
          notes.push(`${proxies.length} sidecar(s) connected to ${admin}`);
        } catch (err) {
          notes.push(`cannot read sidecars from ${admin}: ${(err as Error).message}`);
        }
      }
      for (const t of tls) {
        const eq = t.indexOf('=');
        const [name, addr] = eq > 0 ? [t.slice(0, eq), t.slice(eq + 1)] : [t, t];
        try {
          const c = await servingCertificate(addr);
          subjects.push({ kind: 'serving', name: `${name} (${addr})`, subject: (c.subject ?? '').replace(/\n/g, ', ') || c.subjectAltName || '', notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo), fix: `renew the serving certificate of ${name} (the control plane renews its own; restart it if it did not)` });
        } catch (err) {
          notes.push(`cannot read the serving certificate of ${name} at ${addr}: ${(err as Error).message}`);
        }
      }
      if (federation !== undefined) {
        if (caDir === undefined) throw new UsageError('--federation needs --ca-dir (our own trust domain comes from it)', { flag: 'federation' });
        const file = resolve(ctx.cwd, federation);
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (err) {
          throw new UsageError(`--federation ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { flag: 'federation' });
        }
        const local = readIntermediateSlots(resolve(ctx.cwd, caDir)).current.trustDomain;
        for (const entry of parseFederationConfig(text, file, local)) {
          const bundle = loadFederatedBundle(entry);
          bundle.x509Authorities.forEach((c, i) => {
            subjects.push({ kind: 'root', name: `federated ${entry.trustDomain} #${i + 1}`, subject: c.subjectText, notBefore: c.notBefore, notAfter: c.notAfter, fix: `ask ${entry.trustDomain} for a fresh bundle (trellis bundle export there) and replace ${entry.bundleFile}` });
          });
        }
      }
      const warnDays = daysOption(ctx, 'warn-days');
      const critDays = daysOption(ctx, 'critical-days');
      const override = (k: 'root' | 'intermediate' | 'next-intermediate'): typeof DEFAULT_THRESHOLDS.root => ({
        ...DEFAULT_THRESHOLDS[k],
        ...(warnDays !== undefined ? { warnSeconds: warnDays * DAY } : {}),
        ...(critDays !== undefined ? { criticalSeconds: critDays * DAY } : {}),
      });
      const report = buildCheckReport(now, subjects, notes, { root: override('root'), intermediate: override('intermediate'), 'next-intermediate': override('next-intermediate') });
      if (format === 'json') ctx.stdout.write(JSON.stringify(report) + '\n');
      else {
        let out = '';
        for (const i of report.items) {
          out += `${i.status.toUpperCase().padEnd(8)} ${i.kind.padEnd(17)} ${i.notAfter}  ${humanSeconds(i.remainingSeconds).padEnd(7)} ${i.name}\n`;
          if (i.status !== 'ok') out += `         ${i.reason}\n         fix: ${i.fix}\n`;
        }
        for (const n of report.notes) out += `note: ${n}\n`;
        out += `overall: ${report.status}\n`;
        ctx.stdout.write(out);
      }
      return checkExitCode(report);
    },
  },
];
