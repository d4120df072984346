/** `trellis version`: prints the version. */
import type { Command } from '../command';

export const commands: Command[] = [
  {
    name: 'version',
    summary: 'Print the Trellis version',
    usage: 'trellis version',
    options: {},
    async run(ctx) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pkg = require('../../../package.json') as { version: string };
      ctx.stdout.write(`trellis ${pkg.version}\n`);
    },
  },
];
