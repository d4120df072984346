/**
 * `trellis dashboard`: the live mesh in a browser. A local web server that
 * reads the control plane's admin API with the operator's admin credentials
 * (the browser never holds them) and pushes every change to the page over a
 * WebSocket. Wiring only; the server lives in src/dashboard/.
 */
import { spawn } from 'node:child_process';
import { createLogger, UsageError } from '@trellis/shared';
import { ADMIN_CREDENTIALS_HELP, ADMIN_CREDENTIALS_OPTION, adminTarget } from '../admin-target';
import type { Command } from '../command';
import { flag, optionalString } from '../flags';
import { startDashboard } from '../dashboard/dashboard-server';
import { MeshFeed } from '../dashboard/mesh-feed';

export const commands: Command[] = [
  {
    name: 'dashboard',
    summary: 'Serve a live view of the mesh (workloads, certificates, sync, service graph, CA, audit feed) to a local browser',
    usage: 'trellis dashboard [--admin 127.0.0.1:15014] [--admin-credentials DIR] [--listen 127.0.0.1:15080] [--open] [--allow-remote]',
    description: [
      '--admin ADDR          the control plane\'s admin endpoint (default 127.0.0.1:15014)',
      `${ADMIN_CREDENTIALS_HELP}`,
      '--listen HOST:PORT    where the dashboard listens (default 127.0.0.1:15080; port 0 picks one)',
      '--open                open the URL in the default browser (xdg-open)',
      '--allow-remote        allow a non-loopback --listen address (the token and Origin checks still apply)',
      '',
      'Prints a URL with a random one-time token, as Jupyter does: only that URL opens the page (the',
      'token then moves to an HttpOnly, SameSite=Strict cookie), the WebSocket accepts only the page\'s',
      'own origin, and a Host that is not this server\'s is refused (DNS rebinding). See docs/dashboard.md.',
    ].join('\n'),
    options: { ...ADMIN_CREDENTIALS_OPTION, admin: { type: 'string' }, listen: { type: 'string' }, open: { type: 'boolean' }, 'allow-remote': { type: 'boolean' } },
    async run(ctx) {
      const admin = optionalString(ctx, 'admin') ?? '127.0.0.1:15014';
      if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(admin)) throw new UsageError(`--admin must be host:port, got "${admin}"`, { flag: 'admin' });
      const logger = createLogger({ component: 'dashboard', sink: ctx.stderr });
      const feed = new MeshFeed({ admin: adminTarget(ctx, admin), logger });
      const dash = await startDashboard({ listen: optionalString(ctx, 'listen') ?? '127.0.0.1:15080', allowRemote: flag(ctx, 'allow-remote') }, { feed, logger });
      ctx.stdout.write(`trellis dashboard: ${dash.url}\n`);
      if (flag(ctx, 'open')) {
        const child = spawn('xdg-open', [dash.url], { stdio: 'ignore', detached: true });
        child.on('error', () => ctx.stdout.write('trellis dashboard: could not run xdg-open; open the URL above yourself\n'));
        child.unref();
      }
      ctx.stdout.write('press Ctrl-C to stop\n');
      await new Promise<void>((r) => (ctx.stopSignal.aborted ? r() : ctx.stopSignal.addEventListener('abort', () => r(), { once: true })));
      await dash.stop();
      return 0;
    },
  },
];
