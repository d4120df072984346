/** `trellis inject`: offline sidecar injection over multi-document YAML. */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '@trellis/shared';
import { DEFAULT_INJECTOR_CONFIG, injectManifests, parseInjectorConfig, InjectorError, type InjectorConfig } from '@trellis/injector-webhook';
import type { Command, CommandContext } from '../command';
import { optionalString, requiredString } from '../flags';

/** Loads `--config FILE` (injector settings) or the defaults. */
export function loadInjectorConfig(ctx: CommandContext): InjectorConfig {
  const file = optionalString(ctx, 'config');
  if (file === undefined) return DEFAULT_INJECTOR_CONFIG;
  const path = resolve(ctx.cwd, file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InjectorError('TRELLIS_INJECTOR_BAD_CONFIG', `cannot read --config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file });
  }
  return parseInjectorConfig(text, file);
}

/** The commands this module adds to `trellis`. */
export const commands: Command[] = [
  {
    name: 'inject',
    summary: 'Add the Trellis sidecar to Pods and workload templates in a YAML file (offline)',
    usage: 'trellis inject -f FILE|- [-o FILE] [--config FILE] [--quiet]',
    description: `Reads multi-document YAML and injects Pods, Deployments, StatefulSets, DaemonSets,
ReplicaSets, ReplicationControllers, Jobs and CronJobs (also inside a List) exactly as the
webhook would; other kinds pass through unchanged. Already-injected, hostNetwork and opted-out
(sidecar.trellis.dev/inject: "false") workloads are left as they are.

  -f, --filename FILE   input file, or - for stdin
  -o, --output FILE     write here instead of stdout
  --config FILE         injector settings (YAML; see docs/kubernetes.md)
  --quiet               no per-workload summary on stderr`,
    options: {
      filename: { type: 'string', short: 'f' },
      output: { type: 'string', short: 'o' },
      config: { type: 'string' },
      quiet: { type: 'boolean' },
    },
    async run(ctx) {
      const file = requiredString(ctx, 'filename');
      const config = loadInjectorConfig(ctx);
      let text: string;
      try {
        text = readFileSync(file === '-' ? 0 : resolve(ctx.cwd, file), 'utf8');
      } catch (err) {
        throw new UsageError(`cannot read -f ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { flag: 'filename' });
      }
      const source = file === '-' ? '<stdin>' : file;
      const result = injectManifests(text, source, config);
      const out = optionalString(ctx, 'output');
      if (out !== undefined) writeFileSync(resolve(ctx.cwd, out), result.yaml);
      else ctx.stdout.write(result.yaml);
      if (ctx.values.quiet !== true) {
        for (const r of result.reports) {
          if (r.reason === 'not-a-workload') continue;
          ctx.stderr.write(`${r.kind}/${r.name || '<unnamed>'}: ${r.injected ? 'injected' : 'not injected'} (${r.reason})\n`);
        }
      }
    },
  },
];
