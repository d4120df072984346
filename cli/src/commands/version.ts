/** `trellis version`: Trellis, and the Node.js and OpenSSL it runs on. */
import type { Command } from '../command';

/** The lines `trellis version` prints. Pure: the versions come in. */
export function versionText(trellis: string, versions: { node: string; openssl: string }): string {
  return `trellis ${trellis}\nnode ${versions.node}\nopenssl ${versions.openssl}\n`;
}

export const commands: Command[] = [
  {
    name: 'version',
    summary: 'Print the Trellis, Node.js and OpenSSL versions',
    usage: 'trellis version',
    description: 'Node.js and OpenSSL are those of the runtime this command runs on: the pinned Node 24 that `npm ci` installs, when started through npm or npx.',
    options: {},
    async run(ctx) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pkg = require('../../../package.json') as { version: string };
      ctx.stdout.write(versionText(pkg.version, { node: process.versions.node, openssl: process.versions.openssl }));
    },
  },
];
