/**
 * `trellis validate FILE...` and `trellis policy explain ...`: check policy
 * manifests before they reach the control plane, and show what the mesh
 * would decide for one request. Wiring only: parsing and decisions live in
 * @trellis/shared, the policy directory in @trellis/control-plane.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PolicyStore } from '@trellis/control-plane';
import {
  DEFAULT_ROOT_NAMESPACE,
  DEFAULT_PATH_NORMALIZATION,
  explainInbound,
  formatIssue,
  isPathNormalization,
  normalizePath,
  PATH_NORMALIZATIONS,
  parsePolicyFile,
  parseIp,
  POLICY_CODES,
  PolicyError,
  silentLogger,
  UsageError,
  type EffectiveMtlsMode,
  isMtlsMode,
  parseSpiffeId,
  MTLS_MODES,
  type Policy,
  type PolicyIssue,
} from '@trellis/shared';
import type { Command, CommandContext } from '../command';
import { labelsFlag, optionalString, outputFormat, requiredString } from '../flags';


function rootNamespace(ctx: CommandContext): string {
  return optionalString(ctx, 'root-namespace') ?? DEFAULT_ROOT_NAMESPACE;
}

/** Expands directories to their policy files (sorted); names stay as the user typed them, for messages. */
function expandFiles(ctx: CommandContext, args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    let isDir = false;
    try {
      isDir = statSync(resolve(ctx.cwd, a)).isDirectory();
    } catch {
      // reported when read
    }
    if (isDir) out.push(...readdirSync(resolve(ctx.cwd, a)).filter((n) => /\.(ya?ml|json)$/.test(n) && !n.startsWith('.')).sort().map((n) => join(a, n)));
    else out.push(a);
  }
  return out;
}

function byPosition(a: PolicyIssue, b: PolicyIssue): number {
  return a.documentIndex - b.documentIndex || a.line - b.line || a.column - b.column;
}

/** One line describing an accepted policy. */
function summary(p: Policy): string {
  const scope = p.matchLabels ? `workload {${Object.entries(p.matchLabels).map(([k, v]) => `${k}=${v}`).join(',')}}` : 'namespace-wide';
  if (p.kind === 'PeerAuthentication') {
    const ports = Object.entries(p.portLevelMtls).map(([port, m]) => `${port}=${m}`);
    return `PeerAuthentication ${p.metadata.namespace}/${p.metadata.name}: mode ${p.mtlsMode}, ${scope}${ports.length ? `, ports ${ports.join(' ')}` : ''}`;
  }
  const rules = p.rules === undefined ? 'no rules' : `${p.rules.length} rule${p.rules.length === 1 ? '' : 's'}`;
  return `AuthorizationPolicy ${p.metadata.namespace}/${p.metadata.name}: ${p.action}${p.dryRun ? ' (dry-run)' : ''}, ${rules}, ${scope}`;
}

function parsePort(ctx: CommandContext): number {
  const raw = requiredString(ctx, 'port');
  const port = Number(raw);
  if (!/^[0-9]+$/.test(raw) || port < 1 || port > 65535) throw new UsageError(`--port must be a port number 1-65535, got "${raw}"`, { flag: 'port' });
  return port;
}

export const commands: Command[] = [
  {
    name: 'validate',
    summary: 'Validate PeerAuthentication / AuthorizationPolicy manifests',
    usage: 'trellis validate FILE|DIR... [--root-namespace trellis-system] [-o text|json]',
    description: `Checks every document of every file (a directory means its *.yaml, *.yml and
*.json files) against the policy schemas and Istio's rules. Prints one line per
accepted document; on any error prints every error as
  FILE:LINE:COLUMN: document N PATH: MESSAGE [CODE]
to stderr and exits 1. Warnings (e.g. a selector PeerAuthentication in the root
namespace, which is ignored) do not fail validation. Exit 2 on a usage error.`,
    options: { 'root-namespace': { type: 'string' }, output: { type: 'string', short: 'o' } },
    allowPositionals: true,
    async run(ctx) {
      const format = outputFormat(ctx);
      if (ctx.positionals.length === 0) throw new UsageError('name at least one FILE or DIR to validate');
      const files = expandFiles(ctx, ctx.positionals);
      const results: Array<{ file: string; policies: Policy[]; issues: PolicyIssue[] }> = [];
      for (const file of files) {
        let text: string;
        try {
          text = readFileSync(resolve(ctx.cwd, file), 'utf8');
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          results.push({ file, policies: [], issues: [{ severity: 'error', code: POLICY_CODES.FILE, file, documentIndex: -1, line: 1, column: 1, path: '', message: `cannot read: ${e.code ?? e.message}` }] });
          continue;
        }
        const r = parsePolicyFile(text, file, { firstSeen: new Date(), rootNamespace: rootNamespace(ctx) });
        results.push({ file, policies: r.policies, issues: [...r.issues].sort(byPosition) });
      }
      const all = results.flatMap((r) => r.issues);
      const errors = all.filter((i) => i.severity === 'error');
      const warnings = all.filter((i) => i.severity === 'warning');
      if (format === 'json') {
        ctx.stdout.write(
          JSON.stringify({
            valid: errors.length === 0,
            files: results.map((r) => ({
              file: r.file,
              documents: r.policies.map((p) => ({ documentIndex: p.metadata.source?.documentIndex, kind: p.kind, namespace: p.metadata.namespace, name: p.metadata.name, summary: summary(p) })),
            })),
            errors,
            warnings,
          }, null, 2) + '\n',
        );
      } else {
        for (const r of results) {
          for (const p of r.policies) ctx.stdout.write(`${r.file}: document ${p.metadata.source?.documentIndex ?? 0}: ${summary(p)}\n`);
        }
        for (const w of warnings) ctx.stderr.write(formatIssue(w) + '\n');
        for (const e of errors) ctx.stderr.write(formatIssue(e) + '\n');
        const docs = results.reduce((n, r) => n + r.policies.length, 0);
        if (errors.length > 0) ctx.stderr.write(`invalid: ${errors.length} error${errors.length === 1 ? '' : 's'} in ${new Set(errors.map((e) => e.file)).size} of ${files.length} file${files.length === 1 ? '' : 's'}\n`);
        else ctx.stdout.write(`valid: ${docs} polic${docs === 1 ? 'y' : 'ies'} in ${files.length} file${files.length === 1 ? '' : 's'}${warnings.length ? `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}` : ''}\n`);
      }
      return errors.length > 0 ? 1 : 0;
    },
  },
  {
    name: 'policy explain',
    summary: 'Show the mTLS mode and the allow/deny decision for one request to a workload',
    usage:
      'trellis policy explain --policy-dir DIR --namespace NS [--labels k=v,...] --port P [--principal spiffe://TD/ns/NS/sa/SA] [--source-ip IP] [--method M --path P [--host H]] [--path-normalization BASE] [--root-namespace trellis-system] [--default-mode STRICT|PERMISSIVE|DISABLE] [--trust-domain cluster.local] [-o text|json]',
    description: `Loads the policy directory as the control plane does (a file with errors is
reported on stderr and left out, as it would be on a fresh start) and decides one
inbound request to the workload (namespace + labels) on container port P.
Without --principal the request is plaintext; --method/--path/--host make it an
HTTP request (the port is served as HTTP), otherwise it is TCP and rules with
HTTP fields cannot allow it. STRICT refuses plaintext before authorization.
--path is judged as a sidecar judges it: normalized with --path-normalization
(the control plane's option; BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES or
NONE; default BASE), and a path a sidecar refuses is decision DENY, code
BAD_REQUEST (the sidecar answers 400).
-o json prints one object with mtlsMode, decision, reason, code, policy,
ruleIndex and what decided the mode. Exit 0 whatever the decision.`,
    options: {
      'policy-dir': { type: 'string' },
      namespace: { type: 'string' },
      labels: { type: 'string', multiple: true },
      port: { type: 'string' },
      principal: { type: 'string' },
      'source-ip': { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      host: { type: 'string' },
      'path-normalization': { type: 'string' },
      'root-namespace': { type: 'string' },
      'default-mode': { type: 'string' },
      'trust-domain': { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
    async run(ctx) {
      const format = outputFormat(ctx);
      const dir = resolve(ctx.cwd, requiredString(ctx, 'policy-dir'));
      const namespace = requiredString(ctx, 'namespace');
      const labels = labelsFlag(ctx, 'labels');
      const port = parsePort(ctx);
      const principal = optionalString(ctx, 'principal');
      if (principal !== undefined) {
        try {
          parseSpiffeId(principal);
        } catch (err) {
          throw new UsageError(`--principal must be a full SPIFFE ID (spiffe://trust-domain/ns/NS/sa/SA), got "${principal}": ${(err as Error).message}`, { flag: 'principal' });
        }
      }
      const sourceIp = optionalString(ctx, 'source-ip');
      if (sourceIp !== undefined && !parseIp(sourceIp)) throw new UsageError(`--source-ip must be an IPv4 or IPv6 address, got "${sourceIp}"`, { flag: 'source-ip' });
      const method = optionalString(ctx, 'method');
      const path = optionalString(ctx, 'path');
      const host = optionalString(ctx, 'host');
      if ((method === undefined) !== (path === undefined) || (host !== undefined && method === undefined)) {
        throw new UsageError('an HTTP request needs both --method and --path (--host is optional)', { flag: method === undefined ? 'method' : 'path' });
      }
      const pathMode = optionalString(ctx, 'path-normalization') ?? DEFAULT_PATH_NORMALIZATION;
      if (!isPathNormalization(pathMode)) throw new UsageError(`--path-normalization must be one of ${PATH_NORMALIZATIONS.join(', ')}`, { flag: 'path-normalization' });
      // What a sidecar judges (and forwards): the normalized path, the query as sent.
      const q = path?.indexOf('?') ?? -1;
      const normalized = path === undefined ? undefined : normalizePath(q < 0 ? path : path.slice(0, q), pathMode);
      const judgedPath = normalized?.ok ? normalized.path + (q < 0 ? '' : path!.slice(q)) : path;
      const defaultMode = (optionalString(ctx, 'default-mode') ?? 'STRICT').toUpperCase() as EffectiveMtlsMode;
      if (!isMtlsMode(defaultMode)) throw new UsageError(`--default-mode must be one of ${MTLS_MODES.join(', ')}`, { flag: 'default-mode' });
      try {
        if (!statSync(dir).isDirectory()) throw new Error('not a directory');
      } catch (err) {
        throw new PolicyError(POLICY_CODES.FILE, `--policy-dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }

      const root = rootNamespace(ctx);
      const store = new PolicyStore({ dir, rootNamespace: root, rescanIntervalMs: 0 }, { logger: silentLogger, now: () => new Date() });
      await store.reload();
      const status = store.status();
      store.close();
      const rejected = status.files.filter((f) => f.state === 'rejected');
      for (const f of rejected) ctx.stderr.write(`warning: ${f.file} is rejected and left out:\n${f.errors.map((e) => `  ${e}`).join('\n')}\n`);

      const request = { port, ...(principal ? { principal } : {}), ...(sourceIp ? { sourceIp } : {}), ...(method && judgedPath ? { http: { method, path: judgedPath, ...(host ? { host } : {}) } } : {}) };
      const workload = { namespace, labels };
      const explained = explainInbound(store.current(), workload, request, { rootNamespace: root, defaultMode, trustDomain: optionalString(ctx, 'trust-domain') ?? 'cluster.local' });
      // A path the sidecar cannot normalize never reaches AuthorizationPolicy (a plaintext request under STRICT never gets that far).
      const x =
        normalized && !normalized.ok && explained.code !== 'PLAINTEXT_REJECTED'
          ? { mtlsMode: explained.mtlsMode, mtlsDecidedBy: explained.mtlsDecidedBy, decision: 'DENY' as const, code: 'BAD_REQUEST' as const, reason: `the sidecar answers 400 and closes the connection: ${normalized.reason}`, request: explained.request }
          : explained;
      if (format === 'json') {
        ctx.stdout.write(JSON.stringify({ workload, ...x, rejectedFiles: rejected.map((f) => f.file) }, null, 2) + '\n');
        return 0;
      }
      const by = x.mtlsDecidedBy.policy ? `${x.mtlsDecidedBy.scope} policy ${x.mtlsDecidedBy.policy.namespace}/${x.mtlsDecidedBy.policy.name}` : 'control plane default';
      const lbl = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
      ctx.stdout.write(
        [
          `workload  ${namespace} {${lbl}} port ${port}`,
          `request   ${request.http ? `HTTP ${request.http.method} ${request.http.path}${judgedPath !== path ? ` (sent as ${path}, ${pathMode})` : ''}${request.http.host ? ` host ${request.http.host}` : ''}` : 'TCP'} from ${principal ?? 'plaintext'}${sourceIp ? ` (${sourceIp})` : ''}`,
          `mtlsMode  ${x.mtlsMode} (${by})`,
          `decision  ${x.decision} [${x.code}]`,
          `reason    ${x.reason}`,
          ...('audit' in x && x.audit?.length ? [`audit     ${x.audit.map((a) => `${a.policy.namespace}/${a.policy.name} rule ${a.ruleIndex}`).join(', ')}`] : []),
          ...('dryRun' in x && x.dryRun ? [`dry-run   would be ${x.dryRun.decision} [${x.dryRun.code}]`] : []),
        ].join('\n') + '\n',
      );
      return 0;
    },
  },
];
