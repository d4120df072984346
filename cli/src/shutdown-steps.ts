/**
 * A server's shutdown as named steps under one deadline. A step that hangs
 * (a request to an API server that never answers, a stream that never ends)
 * must not keep a process that was told to stop alive until its supervisor
 * kills it: past the deadline the steps left are abandoned, the stuck one is
 * named at error level, and the caller exits with a failure.
 */
import type { Logger } from '@trellis/shared';

/** One step of a shutdown. */
export interface ShutdownStep {
  name: string;
  run: () => void | Promise<void>;
}

/** What a shutdown came to. */
export type ShutdownOutcome = { done: true } | { done: false; stuckAt: string };

/** Runs `steps` in order; resolves when they are done or `deadlineMs` has passed. */
export async function runShutdownSteps(steps: readonly ShutdownStep[], deadlineMs: number, logger: Logger): Promise<ShutdownOutcome> {
  let current = steps[0]?.name ?? '';
  const all = (async () => {
    for (const step of steps) {
      current = step.name;
      try {
        await step.run();
      } catch (err) {
        logger.warn('shutdown step failed; going on with the next', { step: step.name, error: err });
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), deadlineMs)));
  const outcome = await Promise.race([all.then(() => 'done' as const), late]);
  clearTimeout(timer);
  if (outcome === 'done') return { done: true };
  logger.error(`shutdown did not finish within ${deadlineMs} ms; exiting without the steps left`, { stuckAt: current, left: steps.slice(steps.findIndex((s) => s.name === current)).map((s) => s.name) });
  return { done: false, stuckAt: current };
}
