/**
 * The contract every `trellis` subcommand implements.
 *
 * A command module under `src/commands/` exports `commands: Command[]`; the
 * dispatcher finds them at start-up, so adding a command never edits a shared
 * registry. Commands do wiring only: parse flags into typed options, call the
 * package that holds the behaviour, print the result.
 */
import type { ParseArgsConfig } from 'node:util';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** What a command gets when it runs. Streams and env are injected for tests. */
export interface CommandContext {
  /** Parsed flags, as node:util parseArgs returns them. */
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
  debug: boolean;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); long-running commands await it. */
  stopSignal: AbortSignal;
}

export interface Command {
  /** Space-separated command path, e.g. `ca init`. */
  name: string;
  /** One line for `trellis --help`. */
  summary: string;
  /** The synopsis line(s) shown by `trellis NAME --help` and on usage errors. */
  usage: string;
  /** Longer help: flags and their defaults. */
  description?: string;
  options: OptionSpec;
  allowPositionals?: boolean;
  /** Returns the exit code (0 when omitted). */
  run(ctx: CommandContext): Promise<number | void>;
}
