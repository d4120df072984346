/**
 * Flag values for benchmarks: `--name=V` or `--name V`, as passed through
 * `npm run bench -- NAME --flag V`. Shared so every benchmark reads flags the same way.
 */

/** The raw value of `--name`, or undefined when absent. */
export function stringFlag(flags: readonly string[], name: string): string | undefined {
  const long = `--${name}`;
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i]!;
    if (f.startsWith(long + '=')) return f.slice(long.length + 1);
    if (f === long) return flags[i + 1];
  }
  return undefined;
}

/** A positive number from `--name`, else `dflt`; throws naming the flag when it is not one. */
export function numberFlag(flags: readonly string[], name: string, dflt: number): number {
  const raw = stringFlag(flags, name);
  const v = raw === undefined ? dflt : Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${JSON.stringify(raw)}`);
  return v;
}
