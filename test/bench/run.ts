/**
 * `npm run bench [-- NAME ...]`: runs every benchmark (or the named ones) and
 * prints one JSON object per line. A benchmark is a module `NAME.bench.js`
 * in this folder exporting `run(args: string[]): Promise<Record<string, unknown>>`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

interface BenchModule {
  run(args: string[]): Promise<Record<string, unknown>>;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const available = readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.js'))
    .map((f) => f.slice(0, -'.bench.js'.length))
    .sort();
  // Words that name a benchmark select it; every other word belongs to the flag before it
  // (`control-plane --sidecars 200` passes `--sidecars 200` to that benchmark).
  const names: string[] = [];
  const flags: string[] = [];
  for (const a of argv) {
    if (!a.startsWith('-') && (available.includes(a) || flags.length === 0)) names.push(a);
    else flags.push(a);
  }
  const chosen = names.length > 0 ? names : available;
  let failed = 0;
  for (const name of chosen) {
    if (!available.includes(name)) {
      process.stderr.write(`bench: unknown benchmark "${name}" (have: ${available.join(', ') || 'none'})\n`);
      return 2;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(join(__dirname, `${name}.bench.js`)) as BenchModule;
      const result = await mod.run(flags);
      process.stdout.write(JSON.stringify({ bench: name, ...result }) + '\n');
    } catch (err) {
      failed++;
      process.stdout.write(JSON.stringify({ bench: name, error: (err as Error).message }) + '\n');
    }
  }
  return failed > 0 ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
