/**
 * `trellis up`: runs a local mesh from one YAML file, and `--scenario` walks
 * the example's checks (what `npm start` does).
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { createLogger, TrellisError } from '@trellis/shared';
import type { Command } from '../command';
import { flag, optionalString } from '../flags';
import { parseMeshConfig } from '../up/mesh-config';
import { MeshRunner } from '../up/mesh-runner';
import { runScenario } from '../up/scenario';
import { collectStatus, renderStatus } from '../up/status-view';
import { terminalSink } from '../up/terminal-log';
import { startDashboard, type RunningDashboard } from '../dashboard/dashboard-server';
import { MeshFeed } from '../dashboard/mesh-feed';

/** Resolves once `signal` is aborted, at once if it already is (a listener added after the abort never fires). */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
}

const DEFAULT_CONFIG = join(__dirname, '..', '..', '..', '..', 'examples', 'mesh.yaml');
const TRELLIS_BIN = join(__dirname, '..', '..', '..', 'bin', 'trellis.js');

export const commands: Command[] = [
  {
    name: 'up',
    summary: 'Run a whole local mesh (CA, control plane, sidecars, apps) from one YAML file',
    usage: 'trellis up [--config FILE] [--state-dir .trellis] [--scenario] [--once] [--status-every 10s] [--verbose] [--dashboard ADDR | --no-dashboard]',
    description: [
      '--config FILE      the mesh file (default: the bundled examples/mesh.yaml)',
      '--state-dir DIR    where the CA, tokens and logs live (default .trellis); the CA is created once and reused;',
      '                   fresh admin credentials are written to DIR/admin at each start (TRELLIS_ADMIN_CREDENTIALS=DIR/admin)',
      '--scenario         walk the example scenario and print PASS/FAIL per step',
      '--once             exit after the scenario (or once ready): 0 if every step passed',
      '--status-every N   seconds between live status tables (default 10; 0 turns it off)',
      '--verbose          interleave every child log line on the terminal, prefixed with [workload/process];',
      '                   without it the terminal shows warnings and errors only, and each child logs to',
      '                   DIR/logs/<workload>-<process>.log (paths printed at start)',
      '--dashboard ADDR   where the live dashboard listens (default: the mesh file\'s dashboard, 127.0.0.1:15080);',
      '                   its URL, with a one-time token, is printed once the mesh is up (see trellis dashboard)',
      '--no-dashboard     do not start the dashboard',
      'A child that dies is restarted with backoff (0.5 s doubling to 10 s, starting over after 20 s ready);',
      'a sidecar that exits 75 (no credential left) is restarted at once with a fresh join token.',
      'Ctrl-C (SIGINT/SIGTERM) stops every child (SIGKILL after 5 s); a second one kills them at once and exits 130.',
    ].join('\n'),
    options: {
      config: { type: 'string' },
      'state-dir': { type: 'string' },
      scenario: { type: 'boolean' },
      once: { type: 'boolean' },
      'status-every': { type: 'string' },
      verbose: { type: 'boolean' },
      dashboard: { type: 'string' },
      'no-dashboard': { type: 'boolean' },
    },
    async run(ctx) {
      const file = resolve(ctx.cwd, optionalString(ctx, 'config') ?? DEFAULT_CONFIG);
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new TrellisError('TRELLIS_UP_NO_CONFIG', `cannot read mesh file ${file}: ${(err as Error).message}`, { file });
      }
      const config = parseMeshConfig(text, file, (p) => resolve(dirname(file), p));
      const stateDir = resolve(ctx.cwd, optionalString(ctx, 'state-dir') ?? '.trellis');
      const statusEvery = Number((optionalString(ctx, 'status-every') ?? '10').replace(/s$/, ''));
      const verbose = flag(ctx, 'verbose');
      const logger = createLogger({ component: 'up', sink: verbose ? ctx.stderr : terminalSink(ctx.stderr, 'up') });
      const runner = new MeshRunner(config, stateDir, { logger, output: ctx.stderr, trellisBin: TRELLIS_BIN, verbose });
      if (!verbose) {
        // Named as the user named the state dir (default .trellis), so the path is one to copy.
        const dir = join(optionalString(ctx, 'state-dir') ?? '.trellis', 'logs');
        ctx.stdout.write(`trellis up: child logs in ${dir}/: ${runner.logFiles().map((f) => basename(f)).join(', ')} (--verbose shows them here)\n`);
      }
      let code = 0;
      let timer: NodeJS.Timeout | undefined;
      let dashboard: RunningDashboard | undefined;
      try {
        // A signal at any moment stops everything: during the start, the scenario, the first status, or later.
        await runner.start(ctx.stopSignal).catch((err: unknown) => {
          if (!ctx.stopSignal.aborted) throw err;
        });
        if (ctx.stopSignal.aborted) return code;
        ctx.stdout.write(`trellis up: mesh "${file}" is running (${config.workloads.length} workloads, trust domain ${config.trustDomain})\n`);
        if (!flag(ctx, 'no-dashboard')) {
          // The mesh runs without it when its port is taken: a warning, not a failure.
          const feed = new MeshFeed({ admin: runner.adminTarget(), logger });
          dashboard = await startDashboard({ listen: optionalString(ctx, 'dashboard') ?? config.dashboard }, { feed, logger }).catch((err: Error) => {
            logger.warn('dashboard not started; the mesh runs without it', { error: err });
            return undefined;
          });
          if (dashboard) ctx.stdout.write(`trellis up: dashboard ${dashboard.url}\n`);
        }
        if (flag(ctx, 'scenario')) {
          const results = await runScenario(config, { out: ctx.stdout, signal: ctx.stopSignal, admin: runner.adminTarget() });
          const passed = results.filter((r) => r.ok).length;
          ctx.stdout.write(`scenario: ${passed} passed, ${results.length - passed} failed\n`);
          if (passed !== results.length) code = 1;
        }
        if (!flag(ctx, 'once') && !ctx.stopSignal.aborted) {
          const show = async (): Promise<void> => {
            const now = new Date();
            ctx.stdout.write(renderStatus(await collectStatus(config, now), now));
          };
          await show();
          if (statusEvery > 0 && !ctx.stopSignal.aborted) timer = setInterval(() => void show(), statusEvery * 1000);
          if (!ctx.stopSignal.aborted) ctx.stdout.write('press Ctrl-C to stop\n');
          await aborted(ctx.stopSignal);
        }
      } finally {
        if (timer) clearInterval(timer);
        await dashboard?.stop();
        await runner.stop();
        ctx.stdout.write('trellis up: stopped every child\n');
      }
      return code;
    },
  },
];
