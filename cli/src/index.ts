/** @trellis/cli: the `trellis` command line. */
export { runCli, loadCommands, describeError } from './main';
export type { RunOptions } from './main';
export type { Command, CommandContext, OptionSpec } from './command';
export { optionalString, requiredString, stringList, flag, outputFormat } from './flags';
