/**
 * Helpers that turn parsed flag values into typed options with usage errors
 * that name the flag and the fix.
 */
import { UsageError } from '@trellis/shared';
import type { CommandContext } from './command';

/** The single string value of `--name`, or undefined. Repeated flags: the last wins. */
export function optionalString(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) {
    const last = v[v.length - 1];
    return typeof last === 'string' ? last : undefined;
  }
  return typeof v === 'string' ? v : undefined;
}

/** The value of a required `--name`; a usage error when missing. */
export function requiredString(ctx: CommandContext, name: string): string {
  const v = optionalString(ctx, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`, { flag: name });
  return v;
}

/** Every value of a repeatable `--name` (declare it with `multiple: true`). */
export function stringList(ctx: CommandContext, name: string): string[] {
  const v = ctx.values[name];
  if (v === undefined) return [];
  const arr = Array.isArray(v) ? v : [v];
  return arr.filter((x): x is string => typeof x === 'string');
}

/** A boolean flag. */
export function flag(ctx: CommandContext, name: string): boolean {
  return ctx.values[name] === true;
}

/** `-o json|text`: the output format, validated. */
export function outputFormat(ctx: CommandContext): 'text' | 'json' {
  const v = optionalString(ctx, 'output') ?? 'text';
  if (v !== 'text' && v !== 'json') throw new UsageError(`-o/--output must be "text" or "json", got "${v}"`, { flag: 'output' });
  return v;
}

/**
 * `--name k=v,k2=v2` (comma-separated, or the flag repeated when declared
 * `multiple: true`) as a label map; a usage error naming the item when one is
 * not KEY=VALUE or a key is given twice.
 */
export function labelsFlag(ctx: CommandContext, name: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of stringList(ctx, name).flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${name} takes key=value pairs (comma-separated or repeated), got "${item}"`, { flag: name });
    const key = item.slice(0, eq);
    if (Object.prototype.hasOwnProperty.call(labels, key)) throw new UsageError(`--${name}: label "${key}" is given twice`, { flag: name });
    labels[key] = item.slice(eq + 1);
  }
  return labels;
}
