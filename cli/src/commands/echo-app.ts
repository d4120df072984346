/** `trellis echo-app`: the built-in demo HTTP app used by `trellis up`. */
import { UsageError } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString, requiredString } from '../flags';
import { startEchoApp } from '../up/echo-app';

export const commands: Command[] = [
  {
    name: 'echo-app',
    summary: 'Run the built-in demo HTTP app (echoes each request and the caller identity)',
    usage: 'trellis echo-app --listen [HOST:]PORT [--name NAME]',
    description: 'Answers every request with JSON: the service name, method, path and the caller SPIFFE ID\nfrom x-forwarded-client-cert. Listens on 127.0.0.1 unless HOST is given.',
    options: { listen: { type: 'string' }, name: { type: 'string' } },
    async run(ctx) {
      const listen = requiredString(ctx, 'listen');
      const m = /^(?:(.+):)?(\d{1,5})$/.exec(listen);
      const port = m ? Number(m[2]) : NaN;
      if (!m || port < 1 || port > 65535) throw new UsageError(`--listen must be [HOST:]PORT with a port from 1 to 65535, got "${listen}"`);
      const host = m[1] ?? '127.0.0.1';
      const name = optionalString(ctx, 'name') ?? 'echo';
      const server = await startEchoApp({ name, host, port });
      ctx.stderr.write(JSON.stringify({ time: new Date().toISOString(), level: 'info', component: 'echo-app', msg: 'echo app ready', name, listen: `${host}:${port}` }) + '\n');
      await new Promise<void>((resolve) => {
        if (ctx.stopSignal.aborted) resolve();
        ctx.stopSignal.addEventListener('abort', () => resolve(), { once: true });
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  },
];
