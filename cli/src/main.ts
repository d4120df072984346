/**
 * The `trellis` dispatcher: finds the command for argv, parses its flags,
 * runs it and maps failures to exit codes. Usage errors exit 2 with the
 * command's synopsis; other errors print one line (stack with --debug) and
 * exit 1.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TrellisError, UsageError } from '@trellis/shared';
import type { Command, CommandContext } from './command';
import { closestCommand } from './closest-command';

export interface RunOptions {
  argv: string[];
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stopSignal?: AbortSignal;
  commands?: Command[];
}

const COMMANDS_DIR = join(__dirname, 'commands');

/** Every command shipped in `src/commands/`, sorted by name. */
export function loadCommands(dir: string = COMMANDS_DIR): Command[] {
  const out: Command[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.js')) continue;
    out.push(...commandsIn(join(dir, file)));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

function commandsIn(path: string): Command[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path) as { commands?: Command[] };
  return Array.isArray(mod.commands) ? mod.commands : [];
}

/**
 * The commands of the module named after the first word (`sidecar` → commands/sidecar.js),
 * when that module has the command argv names. Long-running commands (sidecar,
 * control-plane, injector, up) then load only their own dependencies, which keeps a
 * sidecar's memory down; anything else falls back to loading every module.
 */
function commandsFor(words: string[]): Command[] | undefined {
  const first = words[0];
  if (first === undefined || !/^[a-z][a-z0-9-]*$/.test(first)) return undefined;
  let candidates: Command[];
  try {
    candidates = commandsIn(join(COMMANDS_DIR, `${first}.js`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw err;
  }
  for (let n = words.length; n > 0; n--) {
    const name = words.slice(0, n).join(' ');
    if (candidates.some((c) => c.name === name)) return candidates;
  }
  return undefined;
}

/** Runs the CLI and resolves with the exit code; never calls process.exit. */
export async function runCli(options: RunOptions): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const argv = options.argv;
  const debug = argv.includes('--debug');
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  const commands = options.commands ?? commandsFor(words) ?? loadCommands();

  let command: Command | undefined;
  let used = 0;
  for (let n = words.length; n > 0 && !command; n--) {
    const name = words.slice(0, n).join(' ');
    command = commands.find((c) => c.name === name);
    if (command) used = n;
  }

  if (!command) {
    const prefix = words.join(' ');
    const wantsHelp = argv.includes('--help') || argv.includes('-h') || argv.length === 0;
    const group = commands.filter((c) => prefix === '' || c.name.startsWith(prefix + ' '));
    if (group.length > 0 && (wantsHelp || prefix !== '')) {
      stdout.write(overview(group, prefix));
      return wantsHelp || prefix === '' ? 0 : 2;
    }
    if (prefix === '' && argv.includes('--version')) {
      stdout.write(`trellis ${version()}\n`);
      return 0;
    }
    if (prefix === '' && wantsHelp) {
      stdout.write(overview(commands, ''));
      return 0;
    }
    // An unknown command is a usage error even with --help: printing the general
    // help and exiting 0 would let a typo in a script pass as success.
    stderr.write(unknownCommand(words, argv, commands));
    return 2;
  }

  const rest = argv.slice(used);
  if (rest.includes('--help') || rest.includes('-h')) {
    stdout.write(commandHelp(command));
    return 0;
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...command.options, debug: { type: 'boolean' } },
      allowPositionals: command.allowPositionals ?? false,
      strict: true,
    });
  } catch (err) {
    stderr.write(`trellis ${command.name}: ${(err as Error).message.replace(/\. To specify a positional.*$/s, '')}\nusage: ${command.usage}\n`);
    return 2;
  }

  const ctx: CommandContext = {
    values: parsed.values as CommandContext['values'],
    positionals: parsed.positionals,
    stdout,
    stderr,
    env: options.env ?? process.env,
    cwd: options.cwd ?? process.cwd(),
    debug,
    stopSignal: options.stopSignal ?? new AbortController().signal,
  };
  try {
    const code = await command.run(ctx);
    return typeof code === 'number' ? code : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      stderr.write(`trellis ${command.name}: ${err.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    stderr.write(`trellis ${command.name}: ${describeError(err)}\n`);
    if (debug && err instanceof Error && err.stack) stderr.write(err.stack + '\n');
    return 1;
  }
}

/** The line for words that name no command or group: the unknown part, and the closest command when one is close. */
function unknownCommand(words: string[], argv: string[], commands: Command[]): string {
  // The words up to and including the first one that continues no known group.
  let known = 0;
  while (known < words.length && commands.some((c) => (c.name + ' ').startsWith(words.slice(0, known + 1).join(' ') + ' '))) known++;
  const unknown = words.length > 0 ? words.slice(0, known + 1).join(' ') : (argv[0] ?? '');
  const suggestion = words.length > 0 ? closestCommand(words, commands.map((c) => c.name)) : undefined;
  return `trellis: unknown command "${unknown}".${suggestion ? ` Did you mean "trellis ${suggestion}"?` : ''} Run "trellis --help" for the list.\n`;
}

/** One line for an error: `[CODE] message` for ours, the message otherwise. */
export function describeError(err: unknown): string {
  if (err instanceof TrellisError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}

function overview(commands: Command[], prefix: string): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  trellis ${c.name.padEnd(width)}  ${c.summary}`);
  const head = prefix === ''
    ? `trellis ${version()}: zero-trust service mesh security\n\nusage: trellis COMMAND [flags]   (add --help to any command; --debug shows stack traces)\n\ncommands:\n`
    : `usage: trellis ${prefix} SUBCOMMAND [flags]\n\nsubcommands:\n`;
  return head + lines.join('\n') + '\n';
}

function commandHelp(c: Command): string {
  return `usage: ${c.usage}\n\n${c.summary}\n${c.description ? '\n' + c.description.trimEnd() + '\n' : ''}`;
}

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}
